"""The model the package ships (zoo/models/tiny-code): small, offline, trained, and decoding
self-speculatively to exactly its greedy output."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import zoo
from zoo.loading import bundled_folder

FOLDER = bundled_folder("tiny-code")
pytestmark = pytest.mark.skipif(FOLDER is None, reason="no bundled tiny-code weights in this checkout")


def test_ships_small_in_bf16() -> None:
    assert FOLDER is not None
    size = sum(p.stat().st_size for p in FOLDER.iterdir())
    assert size < 50 * 2**20, f"{size / 2**20:.1f} MiB"
    m = zoo.load("tiny-code")
    assert {p.dtype for p in m.parameters()} == {torch.bfloat16}
    assert m.n_future == 4 and m.num_parameters == 4_328_640


def test_is_trained_on_python() -> None:
    """Held-out stdlib Python: the next-token loss is far below the unigram level (~6.6 nats)."""
    from bench.mtp_speedup import held_out_loss

    m = zoo.load("tiny-code", dtype="float32").eval()
    loss = held_out_loss(m, m.tokenizer, tokens=4096)
    assert loss < 4.5, loss


def test_speculative_equals_greedy_on_the_real_model() -> None:
    m = zoo.load("tiny-code", dtype="float32").eval()
    prompt = m.tokenizer.encode("def fibonacci(n):\n", bos=False)
    prompt.insert(0, m.spec.tokenizer.bos_id)
    greedy = m.generate([prompt], max_new_tokens=48)
    spec, stats = m.generate_speculative([prompt], max_new_tokens=48)
    assert spec == greedy
    assert stats.mean_accepted > 1.0  # the heads' drafts are accepted at least sometimes


def test_bf16_speculative_equals_greedy_natively() -> None:
    """In bf16 the native step sums each row in the same order however many rows come with it,
    so a 4-token verifying forward gives head 0 the logits of 4 one-token steps exactly."""
    m = zoo.load("tiny-code").eval()  # bf16, as shipped
    assert m._step is not None
    prompt = m.tokenizer.encode("import os\nimport sys\n\n\ndef main(argv):\n", bos=False)
    greedy = m.generate([prompt], max_new_tokens=64)
    spec, stats = m.generate_speculative([prompt], max_new_tokens=64)
    assert spec == greedy and stats.mean_accepted > 1.5


def test_the_readme_main_job_runs_offline() -> None:
    out = subprocess.run([sys.executable, "-m", "zoo", "generate", "tiny-code", "def fibonacci(n):",
                          "--max-new-tokens", "24"], capture_output=True, text=True, timeout=120,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("def fibonacci(n):") and len(out.stdout) > len("def fibonacci(n):") + 10
