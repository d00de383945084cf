"""BTX's expert-training stage as independent jobs (zoo/recipes/btx_train.py, docs/btx.md):
experts trained in separate processes equal (bit for bit, float32, same seeds and data) the
experts trained one after another in this process, mixing them gives the same model, a failed job
is named with its exit code and log tail, and under torchrun each rank trains its own expert."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import zoo
from zoo.cli import main as cli
from zoo.recipes.btx import branch, mix, resolve_folder
from zoo.recipes.btx_train import (
    ExpertJobError,
    ExpertRecipe,
    ExpertTrainError,
    train_all,
    train_expert,
    train_on_rank,
)

V = 64
TINY = ["arch.dim=32", "arch.n_layers=2", f"arch.vocab_size={V}", "arch.ffn.hidden_dim=48",
        "arch.attention.n_heads=2", "arch.max_seq_len=64"]
RECIPE = ExpertRecipe(steps=3, batch_size=2, seq_len=16, lr=1e-2, warmup=1, log_every=1, seed=5, backend="eager")


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _setup(tmp_path: Path, n: int = 2) -> tuple[Path, list[Path]]:
    zoo.build("llama-2-7b", TINY, backend="eager", seed=1).save(tmp_path / "seed")
    branch(tmp_path / "seed", n, tmp_path / "experts", progress=False)
    data = []
    for i in range(n):  # each domain its own token distribution
        g = torch.Generator().manual_seed(100 + i)
        toks = (torch.randint(0, V // 2, (600,), generator=g) + (i % 2) * (V // 2)).numpy().astype(np.uint16)
        data.append(tmp_path / f"d{i}.bin")
        toks.tofile(data[-1])
    return tmp_path / "experts", data


def _state(run: Path) -> dict[str, torch.Tensor]:
    folder = resolve_folder(run)
    assert folder is not None and folder.name == f"step-{RECIPE.steps:06d}"
    return zoo.load(folder, backend="eager").state_dict()


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.distributed
def test_experts_trained_in_processes_equal_sequential_training_and_mix_the_same(tmp_path: Path) -> None:
    experts, data = _setup(tmp_path)
    seq = [train_expert(experts / f"expert-{i}", data[i], tmp_path / "seq" / f"expert-{i}", RECIPE, threads=1,
                        progress=False) for i in range(2)]
    lines: list[str] = []
    par = train_all(experts, data, tmp_path / "par", RECIPE, procs=2, threads=1, timeout=50, report=lines.append)
    assert [p.name for p in par] == ["expert-0", "expert-1"]
    assert sum("started" in s for s in lines) == 2 and sum("done" in s for s in lines) == 2
    assert (tmp_path / "par" / "logs" / "expert-1.log").is_file()
    assert not [p for p in (tmp_path / "par").iterdir() if p.name.startswith(".")]  # no temporary folders
    seed = zoo.load(tmp_path / "seed", backend="eager").state_dict()
    states = [_state(p) for p in par]
    for s, p in zip(states, seq):
        assert _equal(s, _state(p))  # bit for bit
        assert not _equal(s, seed)  # and it trained
    assert not _equal(states[0], states[1])  # on different data
    moe_par = mix(par, progress=False)  # mix reads the run folders (newest step)
    moe_seq = mix(seq, progress=False)
    assert _equal(moe_par.state_dict(), moe_seq.state_dict())
    # already trained: refused, or skipped with skip_done
    with pytest.raises(ExpertTrainError, match="expert-0 exists"):
        train_all(experts, data, tmp_path / "par", RECIPE)
    assert train_all(experts, data, tmp_path / "par", RECIPE, skip_done=True, report=None) == par


@pytest.mark.distributed
def test_a_failing_expert_job_is_named_with_its_exit_code_and_log(tmp_path: Path) -> None:
    experts, data = _setup(tmp_path)
    bad = tmp_path / "odd.bin"
    bad.write_bytes(b"\x01\x00\x02")  # 3 bytes: not a whole number of uint16 ids; fails inside the job
    with pytest.raises(ExpertJobError) as err:
        train_all(experts, [data[0], bad], tmp_path / "out", RECIPE, procs=2, threads=1, timeout=50, report=None)
    msg = str(err.value)
    assert "expert job expert-1 failed with exit code 2" in msg
    assert "odd.bin: 3 bytes is not a whole number of uint16 ids" in msg  # the log's tail
    assert "finished: expert-0" in msg and "rerun the failed one with: zoo btx train" in msg
    assert [f[0] for f in err.value.failures] == ["expert-1"]
    assert resolve_folder(tmp_path / "out" / "expert-0") is not None  # the other job was not stopped
    assert not (tmp_path / "out" / "expert-1").exists()  # nothing half-written
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_bad_requests_are_refused_before_any_job_starts(tmp_path: Path) -> None:
    experts, data = _setup(tmp_path)
    with pytest.raises(ExpertTrainError, match=r"2 experts \(expert-0, expert-1\) but 1 data files"):
        train_all(experts, data[:1], tmp_path / "out", RECIPE)
    with pytest.raises(ExpertTrainError, match="expert-1: no such token file .*missing.bin"):
        train_all(experts, [data[0], tmp_path / "missing.bin"], tmp_path / "out", RECIPE)
    with pytest.raises(ExpertTrainError, match="holds no expert-N folders"):
        train_all(tmp_path, data, tmp_path / "out", RECIPE)
    with pytest.raises(ExpertTrainError, match="--procs"):
        train_all(experts, data, tmp_path / "out", RECIPE, procs=0)
    assert not (tmp_path / "out").exists()
    # the CLI: typed errors exit 2
    assert cli(["btx", "train-all", str(experts), "--data", str(data[0]), "--out", str(tmp_path / "o"),
                "--steps", "1"]) == 2


def test_torchrun_ranks_train_their_own_experts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--ranks-per-expert 1: rank r of W trains experts r, r+W, … with no process group; the
    result equals a sequential run's (the other ranks' share is checked the same way)."""
    experts, data = _setup(tmp_path, n=3)
    with pytest.raises(ExpertTrainError, match="needs torchrun"):
        train_on_rank(experts, data, tmp_path / "r", RECIPE)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ExpertTrainError, match="only 1 is supported"):
        train_on_rank(experts, data, tmp_path / "r", RECIPE, ranks_per_expert=2)
    done = train_on_rank(experts, data, tmp_path / "r", RECIPE, threads=1, progress=False)
    assert [p.name for p in done] == ["expert-1"] and not (tmp_path / "r" / "expert-0").exists()
    monkeypatch.setenv("RANK", "0")
    assert cli(["btx", "train-all", str(experts), "--data", *map(str, data), "--out", str(tmp_path / "r"),
                "--ranks-per-expert", "1", "--threads", "1", "--no-progress", "--skip-done",
                *RECIPE.argv()]) == 0
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["expert-0", "expert-1", "expert-2"]
    ref = train_expert(experts / "expert-1", data[1], tmp_path / "ref", RECIPE, threads=1, progress=False)
    assert _equal(_state(tmp_path / "r" / "expert-1"), _state(ref))


def test_cli_train_one_expert_then_mix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    experts, data = _setup(tmp_path)
    for i in range(2):
        assert cli(["btx", "train", str(experts / f"expert-{i}"), "--data", str(data[i]), "--out",
                    str(tmp_path / "runs" / f"expert-{i}"), "--threads", "1", "--no-progress", *RECIPE.argv()]) == 0
    assert cli(["btx", "train", str(experts / "expert-0"), "--data", str(data[0]), "--out",
                str(tmp_path / "runs" / "expert-0"), "--steps", "1"]) == 2  # exists: refused
    assert "--overwrite" in capsys.readouterr().err
    assert cli(["btx", "mix", str(tmp_path / "runs" / "expert-0"), str(tmp_path / "runs" / "expert-1"), "--out",
                str(tmp_path / "btx"), "--no-progress"]) == 0
    assert zoo.load(tmp_path / "btx").spec.arch.ffn.n_experts == 2
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()  # a job killed mid-run leaves its hidden folder …
    (tmp_path / f".ref.tmp-{dead}-abc" / "step-000001").mkdir(parents=True)
    ref = train_expert(experts / "expert-0", data[0], tmp_path / "ref", RECIPE, threads=1, progress=False)
    assert _equal(_state(tmp_path / "runs" / "expert-0"), _state(ref))
    assert not list(tmp_path.glob(".ref.tmp-*"))  # … which the next job on that output removes


@pytest.mark.distributed
def test_torchrun_two_ranks_train_two_experts_bit_exact(tmp_path: Path) -> None:
    """`torchrun --nproc-per-node 2 -m zoo btx train-all … --ranks-per-expert 1`: real ranks,
    no process group; each rank's expert equals the one trained in this process."""
    import subprocess
    import sys

    experts, data = _setup(tmp_path)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "0", "-m", "zoo",
           "btx", "train-all", str(experts), "--data", *map(str, data), "--out", str(tmp_path / "tr"),
           "--ranks-per-expert", "1", "--threads", "1", "--no-progress", *RECIPE.argv()]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=50, cwd=tmp_path, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "rank 0/2: training expert-0" in run.stdout and "rank 1/2: training expert-1" in run.stdout
    for i in range(2):
        ref = train_expert(experts / f"expert-{i}", data[i], tmp_path / "seq" / f"expert-{i}", RECIPE, threads=1,
                           progress=False)
        assert _equal(_state(tmp_path / "tr" / f"expert-{i}"), _state(ref))
