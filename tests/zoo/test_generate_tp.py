"""`torchrun --nproc-per-node 2 -m zoo generate FOLDER PROMPT --tp 2`: two gloo ranks, each
holding half of every split weight, print one completion (rank 0) equal to one process's,
greedy, sampled with a seed and streamed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from zoo.cli import main
from zoo.loading import bundled_folder

TOKENIZER = bundled_folder("tiny-code")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-code's shape with 2 heads (its 3 do not split 2 ways), random weights N(0, 0.08), its tokenizer."""
    if TOKENIZER is None:
        pytest.skip("no bundled tiny-code tokenizer in this checkout")
    torch.manual_seed(0)
    m = zoo.build("tiny-code", ["arch.attention.n_heads=2", "arch.attention.n_kv_heads=2"])
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" not in name:
                p.normal_(0, 0.08)
    out = tmp_path_factory.mktemp("tp") / "m"
    m.save(out)
    shutil.copy(TOKENIZER / "tokenizer.json", out)
    return out


def zoo_cli(*args: str, ranks: int = 1) -> str:
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"] \
        if ranks > 1 else [sys.executable]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([*launch, "-m", "zoo", "generate", *args], capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


@pytest.mark.distributed
@pytest.mark.parametrize("flags", [[], ["--temperature", "0.8", "--top-k", "50", "--seed", "5"], ["--stream"]],
                         ids=["greedy", "sampled", "stream"])
def test_torchrun_tp2_prints_what_one_process_prints(folder: Path, flags: list[str]) -> None:
    args = [str(folder), "def fib(n):", "--max-new-tokens", "12", *flags]
    one = zoo_cli(*args)
    two = zoo_cli(*args, "--tp", "2", ranks=2)
    assert one.startswith("def fib(n):") and len(one) > len("def fib(n):\n")
    assert two == one  # printed once (rank 0 only), the same text


@pytest.mark.distributed
def test_unseeded_sampling_agrees_across_ranks(folder: Path) -> None:
    """No --seed: rank 0's fresh seed is broadcast (ranks sampling apart would stop apart and hang)."""
    prompt = "marker_7731 = "  # printed once: by rank 0 alone (the sample itself may hold newlines)
    out = zoo_cli(str(folder), prompt, "--max-new-tokens", "16", "--temperature", "1.5", "--tp", "2", ranks=2)
    assert out.startswith(prompt) and out.count(prompt) == 1 and len(out) > len(prompt) + 1


def test_tp_without_torchrun_says_how_to_launch(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", str(folder), "hi", "--tp", "2"]) == 2
    err = capsys.readouterr().err
    assert "--tp 2 needs 2 processes, this run has 1" in err and "torchrun --nproc-per-node 2" in err
    assert main(["generate", str(folder), "hi", "--tp", "0"]) == 2
    assert "--tp must be >= 1" in capsys.readouterr().err
