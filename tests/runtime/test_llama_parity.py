"""Parity with transformers.LlamaForCausalLM on tiny random weights (float32, 1e-4)."""

from __future__ import annotations

import pytest
import torch

import zoo
from tests.oracles import hf_llama_from

TINY = ["arch.dim=64", "arch.n_layers=2", "arch.vocab_size=128", "arch.ffn.hidden_dim=160", "arch.max_seq_len=256"]
ATOL = RTOL = 1e-4


def tiny(name: str = "llama-2-7b", *extra: str, backend: str = "eager"):  # type: ignore[no-untyped-def]
    m = zoo.build(name, TINY + list(extra), backend=backend, seed=1).eval()
    # random init at std 0.02 leaves logits near zero; bigger weights make the comparison meaningful
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:
                p.mul_(5.0)
    return m


CASES = {
    "mha": [],
    "gqa": ["arch.attention.n_heads=8", "arch.attention.n_kv_heads=2"],
    "mqa": ["arch.attention.n_heads=4", "arch.attention.n_kv_heads=1"],
    "rope-1e6": ["arch.attention.rope.theta=1000000.0"],
    "head-dim-32-with-8-heads": ["arch.attention.n_heads=8", "arch.attention.head_dim=32"],
    "qkv-bias": ["arch.attention.qkv_bias=true", "arch.attention.o_bias=true"],
    "tied": ["arch.tie_embeddings=true"],
    "rope-linear-scaling": ["arch.attention.rope.scaling={kind: linear, factor: 4.0}"],
    "geglu": ["arch.ffn={kind: geglu, hidden_dim: 96}"],
}


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
@pytest.mark.parametrize("case", list(CASES))
def test_logits_match_transformers(case: str, backend: str) -> None:
    m = tiny("llama-2-7b", *CASES[case], backend=backend)
    ref = hf_llama_from(m)
    tokens = torch.randint(0, 128, (2, 17))
    with torch.no_grad():
        ours = m(tokens)
        theirs = ref(tokens).logits
    assert ours.dtype == torch.float32
    assert theirs.abs().max() > 1.0  # not a vacuous comparison of near-zero logits
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=RTOL)


def test_rope_frequencies_match_transformers() -> None:
    from zoo.runtime.modules.rope import RopeConfig
    from zoo.runtime.modules.rope import inv_frequencies

    m = tiny("codellama-7b", "tokenizer.infill=null")  # its infilling ids are past the tiny vocabulary
    ref = hf_llama_from(m)
    ours = inv_frequencies(m.spec.arch.block(0).attention.head_dim, RopeConfig(theta=1e6))
    torch.testing.assert_close(ours, ref.model.rotary_emb.inv_freq, atol=0, rtol=0)


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_left_padded_batch_matches_transformers(backend: str) -> None:
    m = tiny("llama-2-7b", "arch.attention.n_heads=8", "arch.attention.n_kv_heads=2", backend=backend)
    ref = hf_llama_from(m)
    tokens = torch.randint(3, 128, (3, 12))
    mask = torch.ones_like(tokens)
    mask[0, :5] = 0
    mask[1, :1] = 0
    tokens = tokens.masked_fill(mask == 0, 0)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        ours = m(tokens, attention_mask=mask)
        theirs = ref(tokens, attention_mask=mask, position_ids=positions).logits
    valid = mask.bool()
    torch.testing.assert_close(ours[valid], theirs[valid], atol=ATOL, rtol=RTOL)
    # each padded row equals that prompt run alone
    with torch.no_grad():
        alone = m(tokens[0:1, 5:])
    torch.testing.assert_close(ours[0, 5:], alone[0], atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_incremental_decoding_equals_full_forward(backend: str) -> None:
    m = tiny("llama-2-7b", "arch.attention.n_heads=8", "arch.attention.n_kv_heads=2", backend=backend)
    tokens = torch.randint(0, 128, (2, 20))
    with torch.no_grad():
        full = m(tokens)
        cache = m.new_cache(2, 32)
        parts = [m(tokens[:, :7], cache=cache)]
        for t in range(7, 20):
            parts.append(m(tokens[:, t:t + 1], cache=cache))
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=ATOL, rtol=RTOL)
    assert cache.length == 20


@pytest.mark.parametrize("case", ["mha", "gqa"])
def test_greedy_generation_equals_transformers(case: str) -> None:
    m = tiny("llama-2-7b", *CASES[case], backend="sdpa")
    ref = hf_llama_from(m)
    prompt = torch.randint(3, 128, (1, 9))
    with torch.no_grad():
        theirs = ref.generate(prompt, max_new_tokens=24, do_sample=False, eos_token_id=None, pad_token_id=0)
    ours = m.generate(prompt, max_new_tokens=24, temperature=0.0)
    assert ours[0] == theirs[0, 9:].tolist()


def test_batched_left_padded_greedy_equals_transformers() -> None:
    m = tiny("llama-2-7b", *CASES["gqa"], backend="sdpa")
    ref = hf_llama_from(m)
    prompts = [torch.randint(3, 128, (n,)).tolist() for n in (5, 11, 8)]
    from zoo.runtime.generation import left_pad

    tokens, mask = left_pad(prompts, pad_id=0)
    with torch.no_grad():
        theirs = ref.generate(tokens, attention_mask=mask, max_new_tokens=16, do_sample=False, eos_token_id=None,
                              pad_token_id=0)
    ours = m.generate(prompts, max_new_tokens=16)
    assert ours == theirs[:, tokens.shape[1]:].tolist()
    # and each row equals its prompt decoded alone
    for p, row in zip(prompts, ours):
        assert m.generate([p], max_new_tokens=16)[0] == row
