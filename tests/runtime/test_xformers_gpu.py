"""xformers on CUDA against eager: causal, padding, packed block-diagonal, sliding window,
GQA, decoding. Runs only where CUDA and xformers are (`scripts/gpu-check`)."""

from __future__ import annotations

import pytest
import torch

import zoo

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
pytest.importorskip("xformers.ops")

TINY = ["arch.dim=128", "arch.n_layers=2", "arch.vocab_size=96", "arch.ffn.hidden_dim=128", "arch.max_seq_len=256",
        "arch.attention.n_heads=8"]


@pytest.mark.parametrize("extra", [[], ["arch.attention.n_kv_heads=2"], ["arch.attention.sliding_window=4"]])
def test_xformers_matches_eager(extra: list[str]) -> None:
    ref = zoo.build("llama-2-7b", TINY + extra, backend="eager", device="cuda", seed=3).eval()
    m = zoo.build("llama-2-7b", TINY + extra, backend="xformers", device="cuda", seed=3).eval()
    tokens = torch.randint(0, 96, (3, 24), device="cuda")
    mask = torch.ones_like(tokens)
    mask[0, :7] = 0
    segments = torch.tensor([[0] * 10 + [1] * 9 + [2] * 5] * 3, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(m(tokens), ref(tokens), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(m(tokens, attention_mask=mask), ref(tokens, attention_mask=mask), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(m(tokens, segment_ids=segments), ref(tokens, segment_ids=segments), atol=1e-4, rtol=1e-4)
        assert m.generate(tokens[:, :10].tolist(), max_new_tokens=16) == ref.generate(tokens[:, :10].tolist(), max_new_tokens=16)
