"""The RoPE scaling kinds (`linear`, `dynamic`, `llama3`, `yarn`, `longrope`) against
transformers: inverse frequencies and attention scaling equal `ROPE_INIT_FUNCTIONS` (with its
dynamic/LongRoPE updates), logits within 1e-4 in float32 on eager and sdpa against
LlamaForCausalLM (Phi3ForCausalLM for LongRoPE), over sequences longer than the original
context so the length-dependent methods switch; cached decoding step by step equals
transformers' own cached decoding, greedy tokens equal its `generate`; the native decode step
(sdpa) takes these blocks and equals eager."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.oracles import check_decoding, hf_llama_config, to_hf_names
from tests.runtime.test_llama_parity import ATOL, RTOL, tiny

ORIGINAL = 16  # the "pre-training" context of every case; the tests run past it
SHORT = [1.0 + 0.25 * i for i in range(8)]  # LongRoPE factors for head_dim 16 (8 frequencies)
LONG = [2.0 + 1.5 * i for i in range(8)]
#: name -> (zoo scaling, transformers rope_parameters, transformers config extras)
CASES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "linear": ("{kind: linear, factor: 4.0}", {"rope_type": "linear", "factor": 4.0}, {}),
    "dynamic": (f"{{kind: dynamic, factor: 3.0, original_max_position_embeddings: {ORIGINAL}}}",
                {"rope_type": "dynamic", "factor": 3.0}, {"max_position_embeddings": ORIGINAL}),
    "llama3": (f"{{kind: llama3, factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, "
               f"original_max_position_embeddings: {ORIGINAL}}}",
               {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": ORIGINAL}, {}),
    "yarn": (f"{{kind: yarn, factor: 4.0, original_max_position_embeddings: {ORIGINAL}}}",
             {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": ORIGINAL}, {}),
    "yarn-mscale": (f"{{kind: yarn, factor: 8.0, original_max_position_embeddings: {ORIGINAL}, beta_fast: 16, "
                    "beta_slow: 2, mscale: 1.0, mscale_all_dim: 0.5, truncate: false}",
                    {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": ORIGINAL,
                     "beta_fast": 16.0, "beta_slow": 2.0, "mscale": 1.0, "mscale_all_dim": 0.5, "truncate": False}, {}),
    "longrope": (f"{{kind: longrope, short_factor: {SHORT}, long_factor: {LONG}, "
                 f"original_max_position_embeddings: {ORIGINAL}, factor: 4.0}}",
                 {"rope_type": "longrope", "short_factor": SHORT, "long_factor": LONG,
                  "original_max_position_embeddings": ORIGINAL}, {"max_position_embeddings": 4 * ORIGINAL}),
}
BASE = ["arch.attention.n_heads=4", "arch.attention.n_kv_heads=2", "arch.attention.head_dim=16", "arch.norm.eps=1e-5"]


def scaled(case: str, backend: str = "eager"):  # type: ignore[no-untyped-def]
    return tiny("llama-2-7b", *BASE, f"arch.attention.rope.scaling={CASES[case][0]}", backend=backend)


def reference(m: Any, case: str) -> Any:
    """A fresh transformers model (dynamic RoPE keeps state across calls) with m's weights."""
    _, rope, extra = CASES[case]
    theta = m.spec.arch.block(0).attention.rope.theta
    if case.startswith("longrope"):
        return phi3_from(m, {**rope, "rope_theta": theta}, **extra)
    from transformers import LlamaForCausalLM

    ref = LlamaForCausalLM(hf_llama_config(m.spec, rope_parameters={**rope, "rope_theta": theta}, **extra))
    ref.float().eval().load_state_dict(to_hf_names({k: v.detach().float() for k, v in m.state_dict().items()}))
    return ref


def phi3_from(m: Any, rope: dict[str, Any], **extra: Any) -> Any:
    """Phi3ForCausalLM with m's weights: Llama's names, q/k/v and gate/up fused row-wise."""
    from transformers import Phi3Config, Phi3ForCausalLM

    a = m.spec.arch
    att = a.block(0).attention
    assert att.head_dim * att.n_heads == a.dim  # Phi-3 derives head_dim
    cfg = Phi3Config(vocab_size=a.vocab_size, hidden_size=a.dim, intermediate_size=a.block(0).ffn.hidden_dim,
                     num_hidden_layers=a.n_layers, num_attention_heads=att.n_heads, num_key_value_heads=att.n_kv_heads,
                     rms_norm_eps=a.block(0).norm.eps, original_max_position_embeddings=ORIGINAL,
                     rope_parameters=rope, tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                     attn_implementation="eager", **extra)
    ref = Phi3ForCausalLM(cfg).float().eval()
    state = to_hf_names({k: v.detach().float() for k, v in m.state_dict().items()})
    for i in range(a.n_layers):
        p = f"model.layers.{i}."
        state[p + "self_attn.qkv_proj.weight"] = torch.cat([state.pop(f"{p}self_attn.{n}_proj.weight") for n in "qkv"])
        state[p + "mlp.gate_up_proj.weight"] = torch.cat([state.pop(f"{p}mlp.{n}_proj.weight") for n in ("gate", "up")])
    ref.load_state_dict(state, strict=True)
    return ref


# ---------------------------------------------------------------------- (a) frequencies
@pytest.mark.parametrize("case", list(CASES))
def test_frequencies_and_attention_scaling_equal_transformers(case: str) -> None:
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from zoo.runtime.modules.rope import inv_frequencies

    m = scaled(case)
    cfg = m.blocks[0].attn.cfg.rope
    hf = reference(m, case).config
    rope_type = CASES[case][1]["rope_type"]
    for n in (5, ORIGINAL, ORIGINAL + 1, 40):
        theirs, their_scale = ROPE_INIT_FUNCTIONS[rope_type](hf, "cpu", seq_len=torch.tensor(n))
        ours = inv_frequencies(16, cfg, positions=torch.arange(n)[None])
        if rope_type == "dynamic" and n <= ORIGINAL:  # transformers keeps its initial (plain) frequencies
            theirs = ROPE_INIT_FUNCTIONS[rope_type](hf, "cpu")[0]
        torch.testing.assert_close(ours, theirs, atol=0, rtol=0)
        assert cfg.attention_scaling == their_scale
    plain = inv_frequencies(16, type(cfg)(theta=cfg.theta))
    assert not torch.equal(inv_frequencies(16, cfg, positions=torch.arange(40)[None]), plain)  # it scales


# ---------------------------------------------------------------------- (b) logits
@pytest.mark.parametrize("backend", ["eager", "sdpa"])
@pytest.mark.parametrize("case", list(CASES))
def test_logits_match_transformers(case: str, backend: str) -> None:
    m = scaled(case, backend)
    tokens = torch.randint(0, 128, (2, 40))
    with torch.no_grad():
        for t in (ORIGINAL - 4, 40):  # within the original context and past it (dynamic, longrope switch)
            ours, theirs = m(tokens[:, :t]), reference(m, case)(tokens[:, :t]).logits
            assert theirs.abs().max() > 1.0
            torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=RTOL)
    with torch.no_grad():  # and the scaling matters: unscaled RoPE gives other logits past the original context
        plain = tiny("llama-2-7b", *BASE, backend=backend)
        plain.load_state_dict(m.state_dict())
        assert (plain(tokens) - ours).abs().max() > 1e-2


# ---------------------------------------------------------------------- (c) decoding
def cached_steps(model: Any, tokens: torch.Tensor, prompt: int) -> torch.Tensor:
    """Logits of a `prompt`-token prefill, then one token a step, through zoo's KV cache."""
    cache = model.new_cache(tokens.shape[0], 64)
    out = [model(tokens[:, :prompt], cache=cache)]
    out += [model(tokens[:, i:i + 1], cache=cache) for i in range(prompt, tokens.shape[1])]
    return torch.cat(out, 1)


def their_cached_steps(ref: Any, tokens: torch.Tensor, prompt: int) -> torch.Tensor:
    from transformers import DynamicCache

    cache = DynamicCache(config=ref.config)
    out = [ref(tokens[:, :prompt], past_key_values=cache, use_cache=True).logits]
    out += [ref(tokens[:, i:i + 1], past_key_values=cache, use_cache=True).logits for i in range(prompt, tokens.shape[1])]
    return torch.cat(out, 1)


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
@pytest.mark.parametrize("case", list(CASES))
def test_cached_decoding_matches_transformers(case: str, backend: str) -> None:
    m = scaled(case, backend)
    tokens = torch.randint(3, 128, (1, 26))
    with torch.no_grad():
        for prompt in (ORIGINAL - 4, ORIGINAL + 4):  # steps across the original context, and past it
            ours = cached_steps(m, tokens, prompt)
            torch.testing.assert_close(ours, their_cached_steps(reference(m, case), tokens, prompt), atol=ATOL,
                                       rtol=RTOL)
            # equal to the full forward unless the frequencies changed while decoding: dynamic's
            # follow the length, LongRoPE's switch once past the original context (in transformers too)
            if case != "dynamic" and (case != "longrope" or prompt > ORIGINAL):
                torch.testing.assert_close(ours, m(tokens), atol=ATOL, rtol=RTOL)
        # greedy generation across the original context and past it; Phi-3's `generate` (not its
        # model) recomputes the whole cache once when a sequence crosses into the long factors,
        # which zoo's generation does not do, so for LongRoPE only the second one compares
        for n in (ORIGINAL - 2, ORIGINAL + 2)[case == "longrope":]:
            ours = m.generate(tokens[:, :n], max_new_tokens=10, stop_tokens=[])[0]
            theirs = reference(m, case).generate(tokens[:, :n], max_new_tokens=10, do_sample=False, eos_token_id=None)
            assert ours == theirs[0, n:].tolist()


@pytest.mark.parametrize("case", ["linear", "llama3", "longrope"])
def test_check_decoding_oracle(case: str) -> None:
    m = scaled(case, "sdpa")
    check_decoding(m, reference(m, case), ATOL, RTOL)


# ---------------------------------------------------------------------- native decode step
@pytest.mark.parametrize("case", list(CASES))
def test_native_decode_step_takes_scaled_blocks_and_equals_eager(case: str) -> None:
    """The scaling lives in the cos/sin tables (YaRN's and LongRoPE's attention factor included),
    so the native step, which only takes tables, computes every kind."""
    from zoo.runtime import kernels

    if not kernels.precheck()[0]:
        pytest.skip(f"native kernels unavailable: {kernels.precheck()[1]}")
    from tests.runtime.test_block_step import run_chunks, spy

    m, ref = scaled(case, "sdpa"), scaled(case, "eager")
    taken = spy(m)
    tokens = torch.randint(0, 128, (1, 30))
    cuts = [14, 15, 16, 17, 18, 24]
    y, _ = run_chunks(m, tokens, cuts)
    y_ref, _ = run_chunks(ref, tokens, cuts)
    torch.testing.assert_close(y, y_ref, atol=1e-4, rtol=1e-4)
    assert taken[1:] == [True] * len(cuts)
