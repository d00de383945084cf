"""The `per-head` q/k-norm kind (Qwen3: RMSNorm over each head's query and key before RoPE)
against transformers' Qwen3ForCausalLM: tiny random weights, float32, logits within 1e-4 on
eager and sdpa; KV-cache decoding equals the full forward; greedy tokens equal transformers'."""

from __future__ import annotations

import pytest
import torch

import zoo
from tests.oracles import check_decoding
from tests.runtime.test_llama_parity import ATOL, RTOL, TINY, tiny
from zoo.formats import bind, get_format

QWEN3 = ["arch.attention.n_heads=4", "arch.attention.n_kv_heads=2", "arch.attention.head_dim=32",
         "arch.attention.qk_norm={kind: per-head, norm: {kind: rmsnorm, eps: 1e-6}}", "arch.norm.eps=1e-6",
         "arch.attention.rope.theta=1000000.0"]
#: Qwen3's names are Llama's plus the two norms (specs/formats/hf-qwen3.yaml, extending hf-llama)
HF_QWEN3 = get_format("hf-qwen3")


def qwen3_from(m):  # type: ignore[no-untyped-def]
    from transformers import Qwen3Config, Qwen3ForCausalLM

    a = m.spec.arch
    blk = a.block(0)
    att = blk.attention
    cfg = Qwen3Config(vocab_size=a.vocab_size, hidden_size=a.dim, intermediate_size=blk.ffn.hidden_dim,
                      num_hidden_layers=a.n_layers, num_attention_heads=att.n_heads, num_key_value_heads=att.n_kv_heads,
                      head_dim=att.head_dim, rms_norm_eps=blk.norm.eps, max_position_embeddings=a.max_seq_len,
                      rope_parameters={"rope_type": "default", "rope_theta": att.rope.theta}, attention_bias=False,
                      use_sliding_window=False, tie_word_embeddings=False, pad_token_id=0, bos_token_id=1,
                      eos_token_id=2, attn_implementation="eager")
    ref = Qwen3ForCausalLM(cfg).float().eval()
    state = m.state_dict()
    plan = bind(HF_QWEN3, m.spec, {k: tuple(v.shape) for k, v in state.items()})
    ref.load_state_dict({k: v.detach().float() for k, v in plan.to_external(state)}, strict=True)
    return ref


def qwen3(backend: str):  # type: ignore[no-untyped-def]
    m = tiny("llama-2-7b", *QWEN3, backend=backend)
    with torch.no_grad():  # norm weights away from 1, so a skipped norm could not pass
        for name, p in m.named_parameters():
            if name.endswith(("q_norm.weight", "k_norm.weight")):
                p.uniform_(0.5, 1.5)
    return m


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_logits_match_qwen3(backend: str) -> None:
    m = qwen3(backend)
    assert m.state_dict()["blocks.1.attn.q_norm.weight"].shape == (32,)  # one weight per head size
    ref = qwen3_from(m)
    tokens = torch.randint(0, 128, (2, 19))
    with torch.no_grad():
        ours, theirs = m(tokens), ref(tokens).logits
        ref.model.layers[0].self_attn.q_norm.weight.fill_(1.0)
        without = ref(tokens).logits
    assert theirs.abs().max() > 1.0 and (without - theirs).abs().max() > 1e-2  # the norm weights matter
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_cached_decoding_and_greedy_tokens_match_qwen3(backend: str) -> None:
    m = qwen3(backend)
    ref = qwen3_from(m)
    check_decoding(m, ref, ATOL, RTOL)


def test_the_kind_is_explained_counted_and_kept_off_plain_kernels() -> None:
    c = zoo.compile("llama-2-7b", TINY + QWEN3)
    assert {k.op for k in c.kernels if k.op.endswith(("q_norm", "k_norm"))} == {"blocks.0-1.attn.q_norm",
                                                                                "blocks.0-1.attn.k_norm"}
    base = zoo.compile("llama-2-7b", TINY + QWEN3[:3]).accounting
    assert c.accounting.params_by_part["attention"] - base.params_by_part["attention"] == 2 * 2 * 32
    m = zoo.build("llama-2-7b", TINY + QWEN3)
    assert all(blk.attn.extras() == ["q/k norm"] for blk in m.blocks)  # the native decode step declines them
    from zoo.formats.hf import hf_unsupported, to_hf_config

    # no LlamaConfig carries the norms: the Qwen3 family's config does (q/k norm eps = rms_norm_eps) ...
    assert hf_unsupported(m.spec) is None and to_hf_config(m.spec)["model_type"] == "qwen3"
    # ... and none does with a q/k norm eps of its own
    other = zoo.spec("llama-2-7b", TINY + QWEN3[:3] + ["arch.attention.qk_norm={kind: per-head, norm: {kind: rmsnorm, "
                                                       "eps: 1e-5}}", *QWEN3[4:]])
    assert "cannot express" in hf_unsupported(other) and "qk_norm" in hf_unsupported(other)
