"""Gemma-2 against transformers' Gemma2ForCausalLM: attention score soft-capping
(`attention.logit_softcap`), the scale override (`attention.scale` = query_pre_attn_scalar ** -0.5,
with query_pre_attn_scalar != head_dim), sandwich norms with RMSNorm's (1 + w), embeddings times
sqrt(dim), soft-capped logits, GeGLU with tanh-approximated GELU, an explicit head_dim and
sliding-window layers alternating with global ones (window 8, sequences longer than it).
Tiny random weights, float32, logits within 1e-4 on eager and sdpa; KV-cache decoding equals the
full forward and greedy tokens equal transformers'. The native decode step and grouped heads
decline soft-capped or rescaled attention."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import zoo
from tests.oracles import HF_BLOCK_NAMES, check_decoding, to_hf_names
from tests.runtime.test_llama_parity import ATOL, RTOL, TINY, tiny

WINDOW = 8
QUERY_PRE_ATTN_SCALAR = 24  # head_dim is 32: the default scale would differ
ATTN_CAP, FINAL_CAP = 5.0, 10.0
GEMMA2 = ["arch.n_layers=4", "arch.layout={kind: sandwich}", "arch.norm={kind: rmsnorm, eps: 1e-6, unit_offset: true}",
          "arch.embed_scale=sqrt_dim", f"arch.logit_softcap={FINAL_CAP}",
          "arch.ffn={kind: geglu, hidden_dim: 96, activation: gelu_tanh}",
          "arch.attention.n_heads=4", "arch.attention.n_kv_heads=2", "arch.attention.head_dim=32",
          f"arch.attention.scale={QUERY_PRE_ATTN_SCALAR ** -0.5}", f"arch.attention.logit_softcap={ATTN_CAP}",
          f'arch.layers={{"0-3:2": {{attention: {{sliding_window: {WINDOW}}}}}}}']
#: zoo's sandwich-block names -> Gemma2DecoderLayer's
GEMMA2_BLOCK_NAMES = {**HF_BLOCK_NAMES, "attn_norm": "input_layernorm", "post_attn_norm": "post_attention_layernorm",
                      "ffn_norm": "pre_feedforward_layernorm", "post_ffn_norm": "post_feedforward_layernorm"}


def gemma2(backend: str = "eager", *extra: str):  # type: ignore[no-untyped-def]
    m = tiny("llama-2-7b", *GEMMA2, *extra, backend=backend)
    with torch.no_grad():  # (1 + w) norms away from 1, so a dropped offset or norm could not pass
        for name, p in m.named_parameters():
            if "norm" in name:
                p.uniform_(-0.5, 0.5)
    return m


def gemma2_from(m: Any):  # type: ignore[no-untyped-def]
    from transformers import Gemma2Config, Gemma2ForCausalLM

    a = m.spec.arch
    att = a.block(1).attention
    assert a.block(0).attention.sliding_window == WINDOW and att.sliding_window is None
    cfg = Gemma2Config(vocab_size=a.vocab_size, hidden_size=a.dim, intermediate_size=a.block(0).ffn.hidden_dim,
                       num_hidden_layers=a.n_layers, num_attention_heads=att.n_heads, num_key_value_heads=att.n_kv_heads,
                       head_dim=att.head_dim, hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6,
                       max_position_embeddings=a.max_seq_len, tie_word_embeddings=False,
                       rope_parameters={"rope_type": "default", "rope_theta": att.rope.theta},
                       query_pre_attn_scalar=QUERY_PRE_ATTN_SCALAR, sliding_window=WINDOW,
                       layer_types=["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(a.n_layers)],
                       final_logit_softcapping=FINAL_CAP, attn_logit_softcapping=ATTN_CAP,
                       pad_token_id=0, bos_token_id=1, eos_token_id=2, attn_implementation="eager")
    ref = Gemma2ForCausalLM(cfg).float().eval()
    ref.load_state_dict(to_hf_names({k: v.detach().float() for k, v in m.state_dict().items()}, GEMMA2_BLOCK_NAMES),
                        strict=True)
    return ref


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_logits_match_gemma2(backend: str) -> None:
    m = gemma2(backend)
    ref = gemma2_from(m)
    tokens = torch.randint(0, 128, (2, 3 * WINDOW + 5))
    with torch.no_grad():
        ours, theirs = m(tokens), ref(tokens).logits
    assert theirs.abs().max() > 1.0
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=RTOL)
    for field in ("scale", "logit_softcap"):  # each feature changes the result: neither is vacuous
        other = gemma2(backend, f"arch.attention.{field}=null", f'arch.layers={{"0-3:2": {{attention: '
                                                                   f'{{sliding_window: {WINDOW}, {field}: null}}}}}}')
        other.load_state_dict(m.state_dict())
        assert getattr(other.blocks[0].attn.cfg, field) is None and getattr(other.blocks[1].attn.cfg, field) is None
        with torch.no_grad():
            assert (other(tokens) - ours).abs().max() > 1e-2, field


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_cached_decoding_and_greedy_tokens_match_gemma2(backend: str) -> None:
    m = gemma2(backend)
    check_decoding(m, gemma2_from(m), ATOL, RTOL)  # 9-token prompt, 8 new tokens: past the window


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_softcapped_windowed_decode_steps_equal_the_full_forward(backend: str) -> None:
    """Plain pre-norm blocks (which the native step would take) with a soft-cap, a scale and a
    window: decoding one token a step, past the window, equals the full forward."""
    m = tiny("llama-2-7b", "arch.attention.n_heads=4", "arch.attention.n_kv_heads=2", "arch.attention.scale=0.3",
             "arch.attention.logit_softcap=3.0", f"arch.attention.sliding_window={WINDOW}", backend=backend)
    tokens = torch.randint(0, 128, (2, 3 * WINDOW))
    with torch.no_grad():
        cache = m.new_cache(2, 32)
        steps = [m(tokens[:, :4], cache=cache)] + [m(tokens[:, i:i + 1], cache=cache) for i in range(4, tokens.shape[1])]
        torch.testing.assert_close(torch.cat(steps, 1), m(tokens), atol=ATOL, rtol=RTOL)


def test_kernels_decline_and_the_features_are_explained() -> None:
    from zoo.runtime.kernels.block_step import structure
    from zoo.runtime.modules.head_group import groupable

    over = ["arch.attention.n_heads=4"]
    for extra, name in (("arch.attention.scale=0.3", "scale override"),
                        ("arch.attention.logit_softcap=3.0", "score soft-capping")):
        m = zoo.build("llama-2-7b", TINY + over + [extra], backend="sdpa", seed=0)
        assert all(blk.attn.extras() == [name] for blk in m.blocks)
        ok, why = structure(m.blocks[0])
        assert not ok and name in why
        assert not groupable(list(m.blocks))
    plain = zoo.build("llama-2-7b", TINY + over, backend="sdpa", seed=0)
    assert plain.blocks[0].attn.extras() == [] and groupable(list(plain.blocks))
    assert plain.blocks[0].attn.scale == 16 ** -0.5
    c = zoo.compile("llama-2-7b", TINY + GEMMA2, backend="sdpa")
    rows = [k for k in c.kernels if k.kind == "attention"]
    assert rows and all("soft-cap" in k.kernel and "window 8" in k.why for k in rows if k.op.startswith("blocks.0"))
    assert "soft-capped at 5" in c.spec.arch.block(0).attention.describe()


def test_a_vision_encoder_refuses_soft_capping() -> None:
    """Bidirectional attention runs the backends' block-diagonal kernels, which take no soft-cap."""
    from zoo.compiler.errors import SpecError

    from tests.runtime.test_pixtral_parity import TINY as PIXTRAL

    with pytest.raises(SpecError, match="soft-capping runs in causal attention only"):
        zoo.compile("pixtral-12b", PIXTRAL + ["arch.vision.attention.logit_softcap=5.0"])
    vision = zoo.build("pixtral-12b", PIXTRAL + ["arch.vision.attention.scale=0.5"]).vision.blocks[0].attn
    assert vision.scale == 0.5  # the scale override reaches the block-diagonal kernel
