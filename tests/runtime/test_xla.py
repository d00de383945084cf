"""The XLA backend for real, on torch_xla's CPU device (PJRT_DEVICE=CPU).

Runs in the torch_xla virtualenv (`scripts/setup-xla`; torch_xla needs torch 2.9.0), which
`scripts/test` drives after the main suite; skipped where torch_xla is not importable."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("PJRT_DEVICE", "CPU")
xla = pytest.importorskip("torch_xla", reason="torch_xla lives in its own virtualenv (scripts/setup-xla)")
pytestmark = pytest.mark.xla

import zoo  # noqa: E402

TINY = ["arch.dim=64", "arch.n_layers=2", "arch.vocab_size=96", "arch.ffn.hidden_dim=96", "arch.max_seq_len=128",
        "arch.attention.n_heads=4", "arch.attention.n_kv_heads=2"]


def _pair():  # type: ignore[no-untyped-def]
    import torch_xla

    dev = torch_xla.device()
    ref = zoo.build("llama-2-7b", TINY, backend="eager", seed=7).eval()
    m = zoo.build("llama-2-7b", TINY, backend="xla", seed=7, device=dev).eval()
    return ref, m, dev


def test_logits_equal_eager_within_1e_4() -> None:
    ref, m, dev = _pair()
    tokens = torch.randint(0, 96, (2, 11))
    mask = torch.ones_like(tokens)
    mask[0, :3] = 0
    with torch.no_grad():
        ours = m(tokens.to(dev), attention_mask=mask.to(dev)).cpu()
        theirs = ref(tokens, attention_mask=mask)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_static_cache_generation_matches_eager_and_compiles_once() -> None:
    import torch_xla.debug.metrics as met

    ref, m, dev = _pair()
    prompts = [[5, 6, 7, 8], [9, 10]]
    expected = ref.generate(prompts, max_new_tokens=12)

    def compiles() -> int:
        data = met.metric_data("CompileTime")
        return int(data[0]) if data else 0

    assert m.new_cache(1, 8).static  # the xla backend asks for a static cache
    warm = m.generate(prompts, max_new_tokens=3)  # prefill graph + the decode-step graph
    after_warmup = compiles()
    out = m.generate(prompts, max_new_tokens=12)
    assert out == expected and warm == [r[:3] for r in expected]
    assert compiles() == after_warmup, "decoding recompiled after warm-up"
