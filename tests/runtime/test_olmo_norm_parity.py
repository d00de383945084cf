"""The `nonparametric-layernorm` kind (OLMo's LayerNorm without weight or bias) against
transformers' OlmoForCausalLM: tiny random weights, float32, logits within 1e-4, on eager and
sdpa; KV-cache decoding equals the full forward and greedy tokens equal transformers'."""

from __future__ import annotations

import pytest
import torch

from tests.oracles import check_decoding
from tests.runtime.test_llama_parity import ATOL, RTOL, TINY, tiny
from zoo.formats.export import external_state

OLMO = ["arch.norm={kind: nonparametric-layernorm}", "arch.attention.n_heads=4", "arch.attention.n_kv_heads=2",
        "arch.attention.rope.theta=500000.0"]


def olmo_from(m):  # type: ignore[no-untyped-def]
    """transformers' OlmoForCausalLM holding `m`'s weights (OLMo's names are Llama's; its norms have none)."""
    from transformers import OlmoConfig, OlmoForCausalLM

    a = m.spec.arch
    att = a.block(0).attention
    cfg = OlmoConfig(vocab_size=a.vocab_size, hidden_size=a.dim, intermediate_size=a.block(0).ffn.hidden_dim,
                     num_hidden_layers=a.n_layers, num_attention_heads=att.n_heads, num_key_value_heads=att.n_kv_heads,
                     max_position_embeddings=a.max_seq_len, attention_bias=False, clip_qkv=None,
                     rope_parameters={"rope_type": "default", "rope_theta": att.rope.theta}, tie_word_embeddings=False,
                     pad_token_id=0, bos_token_id=1, eos_token_id=2, attn_implementation="eager")
    ref = OlmoForCausalLM(cfg).float().eval()
    ref.load_state_dict({k: v.detach().float() for k, v in external_state(m, "hf-llama").items()}, strict=True)
    return ref


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_logits_match_olmo(backend: str) -> None:
    m = tiny("llama-2-7b", *OLMO, backend=backend)
    assert not [n for n in m.state_dict() if "norm" in n]  # no norm parameters at all
    ref = olmo_from(m)
    tokens = torch.randint(0, 128, (2, 19))
    with torch.no_grad():
        ours, theirs = m(tokens), ref(tokens).logits
    assert theirs.abs().max() > 1.0
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_cached_decoding_and_greedy_tokens_match_olmo(backend: str) -> None:
    m = tiny("llama-2-7b", *OLMO, backend=backend)
    ref = olmo_from(m)
    check_decoding(m, ref, ATOL, RTOL)


def test_the_kind_is_explained_and_counted() -> None:
    import zoo

    c = zoo.compile("llama-2-7b", TINY + OLMO)
    rows = [k for k in c.kernels if k.kind == "nonparametric-layernorm"]
    assert {k.op for k in rows} == {"blocks.0-1.attn_norm", "blocks.0-1.ffn_norm", "norm"}
    assert "norm" not in c.accounting.params_by_part  # nothing to count
