"""Partial rotary (`rope.fraction`: GPT-NeoX's rotary_pct, StableLM's and Phi's
partial_rotary_factor) against transformers' StableLmForCausalLM (LayerNorm with biases, q/k/v
biases, the first int(head_dim * fraction) dims of each head rotated, alone and with dynamic NTK
scaling) and Phi3ForCausalLM (with LongRoPE): logits within 1e-4 in float32 on eager and sdpa,
cached decoding equals the full forward, greedy tokens equal transformers'; the native decode
step and grouped heads decline such blocks, the fused RoPE kernel rotates the leading part."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import zoo
from tests.oracles import check_decoding, to_hf_names
from tests.runtime.test_llama_parity import ATOL, RTOL, TINY, tiny
from tests.runtime.test_rope_scaling_parity import LONG, ORIGINAL, SHORT, phi3_from

STABLELM = ["arch.norm={kind: layernorm, eps: 1e-5}", "arch.attention.n_heads=4", "arch.attention.n_kv_heads=2",
            "arch.attention.qkv_bias=true", "arch.attention.rope.fraction=0.5"]
#: name -> (zoo overrides, transformers rope_parameters, transformers config extras)
CASES: dict[str, tuple[list[str], dict[str, Any], dict[str, Any]]] = {
    "stablelm": (STABLELM, {"rope_type": "default"}, {}),
    "stablelm-dynamic": (STABLELM + [f"arch.attention.rope.scaling={{kind: dynamic, factor: 2.0, "
                                     f"original_max_position_embeddings: {ORIGINAL}}}"],
                         {"rope_type": "dynamic", "factor": 2.0}, {"max_position_embeddings": ORIGINAL}),
    "phi3-longrope": (["arch.attention.n_heads=4", "arch.attention.n_kv_heads=2", "arch.attention.rope.fraction=0.5",
                       f"arch.attention.rope.scaling={{kind: longrope, short_factor: {SHORT[:4]}, "
                       f"long_factor: {LONG[:4]}, original_max_position_embeddings: {ORIGINAL}, factor: 4.0}}"],
                      {"rope_type": "longrope", "short_factor": SHORT[:4], "long_factor": LONG[:4],
                       "original_max_position_embeddings": ORIGINAL}, {"max_position_embeddings": 4 * ORIGINAL}),
}


def partial(case: str, backend: str = "eager"):  # type: ignore[no-untyped-def]
    m = tiny("llama-2-7b", *CASES[case][0], backend=backend)
    with torch.no_grad():  # norms and biases away from their initial values, so a dropped one could not pass
        for name, p in m.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.5)
    return m


def reference(m: Any, case: str) -> Any:
    _, rope, extra = CASES[case]
    att = m.spec.arch.block(0).attention
    rope = {**rope, "rope_theta": att.rope.theta, "partial_rotary_factor": att.rope.fraction}
    if case.startswith("phi3"):
        return phi3_from(m, rope, **extra)
    from transformers import StableLmConfig, StableLmForCausalLM

    a = m.spec.arch
    extra = {"max_position_embeddings": a.max_seq_len, **extra}
    cfg = StableLmConfig(vocab_size=a.vocab_size, hidden_size=a.dim, intermediate_size=a.block(0).ffn.hidden_dim,
                         num_hidden_layers=a.n_layers, num_attention_heads=att.n_heads, num_key_value_heads=att.n_kv_heads,
                         layer_norm_eps=a.block(0).norm.eps, use_qkv_bias=True,
                         rope_parameters=rope, partial_rotary_factor=att.rope.fraction, tie_word_embeddings=False,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2, attn_implementation="eager",
                         **extra)
    ref = StableLmForCausalLM(cfg).float().eval()
    ref.load_state_dict(to_hf_names({k: v.detach().float() for k, v in m.state_dict().items()}), strict=True)
    return ref


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
@pytest.mark.parametrize("case", list(CASES))
def test_logits_match_transformers(case: str, backend: str) -> None:
    m = partial(case, backend)
    assert m.blocks[0].attn.cfg.rope.width(16) == 8
    tokens = torch.randint(0, 128, (2, 40))
    with torch.no_grad():
        for t in (ORIGINAL - 4, 40):
            ours, theirs = m(tokens[:, :t]), reference(m, case)(tokens[:, :t]).logits
            assert theirs.abs().max() > 1.0
            torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=RTOL)
        if "longrope" in case:  # its factor lists are per rotated frequency: a whole head needs other lists
            return
        whole = tiny("llama-2-7b", *CASES[case][0], "arch.attention.rope.fraction=1.0", backend=backend)
        whole.load_state_dict(m.state_dict())
        assert (whole(tokens) - ours).abs().max() > 1e-2  # rotating the whole head differs


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
@pytest.mark.parametrize("case", list(CASES))
def test_cached_decoding_and_greedy_tokens_match(case: str, backend: str) -> None:
    m = partial(case, backend)
    check_decoding(m, reference(m, case), ATOL, RTOL)


def test_kernels_decline_or_rotate_the_leading_part() -> None:
    from zoo.runtime import kernels
    from zoo.runtime.modules.rope import RopeConfig, apply_rope, rope_tables

    m = zoo.build("llama-2-7b", TINY + ["arch.attention.n_heads=4", "arch.attention.rope.fraction=0.25"],
                  backend="sdpa", seed=0)
    assert all(blk.attn.extras() == ["partial rotary"] for blk in m.blocks)  # native step, grouped heads
    full = zoo.build("llama-2-7b", TINY + ["arch.attention.n_heads=4"], seed=0)
    assert full.blocks[0].attn.extras() == []
    x = torch.randn(2, 4, 7, 16)
    cos, sin = rope_tables(torch.arange(7).expand(2, 7), 16, RopeConfig(fraction=0.25), torch.float32)
    assert cos.shape == (2, 1, 7, 4)
    want = torch.cat((apply_rope(x[..., :4], cos, sin), x[..., 4:]), dim=-1)
    assert kernels.rope(x.clone(), cos, sin) is None  # tables narrower than the head: the fused kernel declines
    torch.testing.assert_close(m.blocks[0].attn._rope(x.clone(), cos, sin), want)  # it rotates the slice
    tokens = torch.randint(0, 128, (1, 12))
    with torch.no_grad():
        cache = m.new_cache(1, 16)
        steps = torch.cat([m(tokens[:, :6], cache=cache)] + [m(tokens[:, i:i + 1], cache=cache) for i in range(6, 12)], 1)
        torch.testing.assert_close(steps, m(tokens), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("fraction, why", [(0.3, "= 4 rotary dims"), (0.2, "= 3 rotary dims"),
                                           (0.01, "= 0 rotary dims")])
def test_rotary_dims_are_checked(fraction: float, why: str) -> None:
    from zoo.compiler.errors import SpecError

    base = TINY + ["arch.attention.n_heads=4"]
    if fraction == 0.3:  # fine: 16 * 0.3 = 4.8 -> 4, as transformers' int()
        assert zoo.build("llama-2-7b", base + [f"arch.attention.rope.fraction={fraction}"]).blocks[0].attn.extras()
        return
    with pytest.raises(SpecError, match=why):
        zoo.compile("llama-2-7b", base + [f"arch.attention.rope.fraction={fraction}"])
    with pytest.raises(SpecError, match="longrope has 8 factors per list; the heads rotate 8 dims"):
        zoo.compile("llama-2-7b", base + ["arch.attention.rope.fraction=0.5", "arch.attention.rope.scaling="
                                          f"{{kind: longrope, short_factor: {SHORT}, long_factor: {LONG}, "
                                          "original_max_position_embeddings: 16, factor: 2}"])
