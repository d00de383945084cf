"""The xformers backend's attention biases, checked on the CPU: xformers imports here (its
kernels need CUDA), so `memory_efficient_attention` is replaced by plain math that materializes
whatever bias the backend built (xformers' own `AttentionBias.materialize`). A wrong bias class,
a wrong seqlens list or a misplaced GQA reshape shows up as logits that differ from eager's; the
real kernels run in tests/runtime/test_xformers_gpu.py on CUDA."""

from __future__ import annotations

import pytest
import torch

import zoo

fmha = pytest.importorskip("xformers.ops.fmha")
from zoo.runtime.backends.xformers import XFormersBackend  # noqa: E402

TINY = ["arch.dim=64", "arch.n_layers=2", "arch.vocab_size=96", "arch.ffn.hidden_dim=96", "arch.max_seq_len=128",
        "arch.attention.n_heads=4"]


def math_attention(q, k, v, attn_bias=None, scale=None):  # type: ignore[no-untyped-def]
    """memory_efficient_attention's contract: q (B, M, H, D) or (B, M, G, H, D), same for k/v."""
    five = q.ndim == 5
    if five:
        b, m, g, h, d = q.shape
        q, k, v = (x.reshape(x.shape[0], x.shape[1], g * h, d) for x in (q, k, v))
    qh, kh, vh = (x.transpose(1, 2).float() for x in (q, k, v))  # (B, H, M, D)
    scores = qh @ kh.transpose(-1, -2) * scale
    if isinstance(attn_bias, torch.Tensor):
        bias = attn_bias.float().reshape(scores.shape[0], -1, *scores.shape[-2:])
    else:
        assert isinstance(attn_bias, fmha.attn_bias.AttentionBias), type(attn_bias)
        bias = attn_bias.materialize(scores.shape[-2:], dtype=torch.float32, device=scores.device)
    out = torch.softmax(scores + bias, dim=-1) @ vh
    out = out.transpose(1, 2).to(q.dtype)
    return out.reshape(*out.shape[:2], g, h, d) if five else out


@pytest.fixture
def emulated(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    seen: list[object] = []

    def fake(q, k, v, attn_bias=None, scale=None):  # type: ignore[no-untyped-def]
        seen.append(attn_bias if not isinstance(attn_bias, torch.Tensor) else "dense")
        return math_attention(q, k, v, attn_bias, scale)

    import xformers.ops

    monkeypatch.setattr(xformers.ops, "memory_efficient_attention", fake)
    return seen


def pair(extra: list[str]) -> tuple[torch.nn.Module, torch.nn.Module]:
    ref = zoo.build("llama-2-7b", TINY + extra, backend="eager", seed=3).eval()
    m = zoo.build("llama-2-7b", TINY + extra, backend="eager", seed=3).eval()
    m.set_backend(XFormersBackend())
    return m, ref


@pytest.mark.parametrize("extra", [[], ["arch.attention.n_kv_heads=2"], ["arch.attention.n_kv_heads=1"],
                                   ["arch.attention.sliding_window=4"]])
def test_biases_give_eager_logits(extra: list[str], emulated: list[object]) -> None:
    m, ref = pair(extra)
    tokens = torch.randint(0, 96, (3, 24))
    mask = torch.ones_like(tokens)
    mask[0, :7] = 0
    segments = torch.tensor([[0] * 10 + [1] * 9 + [2] * 5] * 3)
    with torch.no_grad():
        torch.testing.assert_close(m(tokens), ref(tokens), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(m(tokens, attention_mask=mask), ref(tokens, attention_mask=mask), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(m(tokens, segment_ids=segments), ref(tokens, segment_ids=segments),
                                   atol=1e-5, rtol=1e-5)
    kinds = {type(b).__name__ if b != "dense" else b for b in emulated}
    assert "dense" in kinds  # the padded batch
    assert any(k.startswith("BlockDiagonal") for k in kinds)  # the packed one
    assert any(k.startswith("LowerTriangular") for k in kinds)  # the plain one


@pytest.mark.parametrize("extra", [[], ["arch.attention.n_kv_heads=2"], ["arch.attention.sliding_window=4"]])
def test_decoding_against_a_cache(extra: list[str], emulated: list[object]) -> None:
    m, ref = pair(extra)
    prompts = torch.randint(0, 96, (2, 10)).tolist()
    assert m.generate(prompts, max_new_tokens=12) == ref.generate(prompts, max_new_tokens=12)
    # uneven prompts: left padding, a dense bias
    uneven = [prompts[0][:4], prompts[1]]
    assert m.generate(uneven, max_new_tokens=8) == ref.generate(uneven, max_new_tokens=8)
    assert any(type(b).__name__ == "LowerTriangularFromBottomRightMask" or
               type(b).__name__ == "LowerTriangularFromBottomRightLocalAttentionMask" for b in emulated)


def test_multi_token_steps_against_a_cache(emulated: list[object]) -> None:
    """A 3-token step after a prompt: queries are the last 3 of the keys (bottom-right causal)."""
    m, ref = pair(["arch.attention.n_kv_heads=2"])
    tokens = torch.randint(0, 96, (2, 12))
    with torch.no_grad():
        outs = []
        for x in (m, ref):
            cache = x.new_cache(2, 20)
            x(tokens[:, :9], cache=cache)
            outs.append(x(tokens[:, 9:], cache=cache))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)


def test_block_diagonal_attention_for_packed_images(emulated: list[object]) -> None:
    from zoo.runtime.backends.eager import EagerBackend

    q = torch.randn(1, 4, 11, 8)
    k, v = torch.randn(1, 2, 11, 8), torch.randn(1, 2, 11, 8)
    want = EagerBackend().block_diagonal_attention(q, k, v, [4, 7], 8 ** -0.5)
    got = XFormersBackend().block_diagonal_attention(q, k, v, [4, 7], 8 ** -0.5)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert type(emulated[-1]).__name__ == "BlockDiagonalMask"
