"""The `whole` q/k-norm kind (OLMo-2: RMSNorm over the whole q projection, n_heads * head_dim
wide, and the whole k projection, n_kv_heads * head_dim, before the head split and RoPE) with
the post-norm layout, against transformers' Olmo2ForCausalLM: tiny random weights, float32,
logits within 1e-4 on eager and sdpa; KV-cache decoding equals the full forward and greedy
tokens equal transformers'. The native decode step and grouped heads decline such blocks."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import zoo
from tests.oracles import HF_BLOCK_NAMES, check_decoding, to_hf_names
from tests.runtime.test_llama_parity import ATOL, RTOL, TINY, tiny

OLMO2 = ["arch.layout={kind: post-norm}", "arch.norm={kind: rmsnorm, eps: 1e-6}", "arch.attention.n_heads=4",
         "arch.attention.n_kv_heads=2", "arch.attention.qk_norm={kind: whole, norm: {kind: rmsnorm, eps: 1e-6}}",
         "arch.attention.rope.theta=500000.0"]
#: zoo's post-norm block names -> Olmo2DecoderLayer's
OLMO2_BLOCK_NAMES = {**HF_BLOCK_NAMES, "post_attn_norm": "post_attention_layernorm",
                     "post_ffn_norm": "post_feedforward_layernorm", "attn.q_norm": "self_attn.q_norm",
                     "attn.k_norm": "self_attn.k_norm"}


def olmo2(backend: str = "eager"):  # type: ignore[no-untyped-def]
    m = tiny("llama-2-7b", *OLMO2, backend=backend)
    with torch.no_grad():  # norm weights away from 1, so a skipped norm could not pass
        for name, p in m.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return m


def olmo2_from(m: Any):  # type: ignore[no-untyped-def]
    from transformers import Olmo2Config, Olmo2ForCausalLM

    a = m.spec.arch
    att = a.block(0).attention
    cfg = Olmo2Config(vocab_size=a.vocab_size, hidden_size=a.dim, intermediate_size=a.block(0).ffn.hidden_dim,
                      num_hidden_layers=a.n_layers, num_attention_heads=att.n_heads, num_key_value_heads=att.n_kv_heads,
                      hidden_act="silu", max_position_embeddings=a.max_seq_len, rms_norm_eps=1e-6,
                      rope_parameters={"rope_type": "default", "rope_theta": att.rope.theta}, attention_bias=False,
                      tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                      attn_implementation="eager")
    ref = Olmo2ForCausalLM(cfg).float().eval()
    ref.load_state_dict(to_hf_names({k: v.detach().float() for k, v in m.state_dict().items()}, OLMO2_BLOCK_NAMES),
                        strict=True)
    return ref


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_logits_match_olmo2(backend: str) -> None:
    m = olmo2(backend)
    state = m.state_dict()
    assert state["blocks.1.attn.q_norm.weight"].shape == (64,) and state["blocks.1.attn.k_norm.weight"].shape == (32,)
    assert not [n for n in state if n.endswith(("attn_norm.weight", "ffn_norm.weight")) and "post_" not in n]
    ref = olmo2_from(m)
    tokens = torch.randint(0, 128, (2, 19))
    with torch.no_grad():
        ours, theirs = m(tokens), ref(tokens).logits
        ref.model.layers[0].self_attn.k_norm.weight.fill_(1.0)
        without = ref(tokens).logits
    assert theirs.abs().max() > 1.0 and (without - theirs).abs().max() > 1e-2  # the norm weights matter
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=RTOL)
    per_head = tiny("llama-2-7b", *OLMO2, "arch.attention.qk_norm.kind=per-head", backend=backend)
    per_head.load_state_dict({k: v[:16] if k.endswith(("q_norm.weight", "k_norm.weight")) else v
                              for k, v in state.items()})
    with torch.no_grad():
        assert (per_head(tokens) - ours).abs().max() > 1e-2  # normalizing each head differs


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_cached_decoding_and_greedy_tokens_match_olmo2(backend: str) -> None:
    m = olmo2(backend)
    check_decoding(m, olmo2_from(m), ATOL, RTOL)


def test_the_kind_is_explained_counted_and_kept_off_plain_kernels() -> None:
    from zoo.runtime.kernels.block_step import structure
    from zoo.runtime.modules.head_group import groupable

    whole = ["arch.attention.n_heads=4", "arch.attention.n_kv_heads=2",
             "arch.attention.qk_norm={kind: whole, norm: {kind: rmsnorm, eps: 1e-6}}"]
    c = zoo.compile("llama-2-7b", TINY + whole)
    assert {k.op for k in c.kernels if k.op.endswith(("q_norm", "k_norm"))} == {"blocks.0-1.attn.q_norm",
                                                                                "blocks.0-1.attn.k_norm"}
    base = zoo.compile("llama-2-7b", TINY + whole[:2]).accounting
    assert c.accounting.params_by_part["attention"] - base.params_by_part["attention"] == 2 * (64 + 32)
    assert "over the whole projection" in c.spec.arch.block(0).attention.describe()
    m = zoo.build("llama-2-7b", TINY + whole, backend="sdpa", seed=0)
    assert all(blk.attn.extras() == ["q/k norm"] for blk in m.blocks)
    assert not structure(m.blocks[0])[0] and not groupable(list(m.blocks))
