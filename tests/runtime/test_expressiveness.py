"""Each spec feature a user can declare without Python, checked against a transformers model
configured the same way (tiny random weights, float32, 1e-4)."""

from __future__ import annotations

import pytest
import torch

import zoo
from tests.oracles import HF_BLOCK_NAMES, to_hf_names

BASE = ["arch.dim=64", "arch.n_layers=2", "arch.vocab_size=96", "arch.max_seq_len=128", "arch.ffn.hidden_dim=128"]


def _tiny(*overrides: str, backend: str = "eager"):  # type: ignore[no-untyped-def]
    m = zoo.build("llama-2-7b", BASE + list(overrides), backend=backend, seed=3).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1) if p.dim() == 1 else p.mul_(5.0)
    return m


def _compare(m, ref, state, strict: bool = True) -> None:  # type: ignore[no-untyped-def]
    missing, unexpected = ref.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert all(k == "lm_head.weight" for k in missing), missing  # only a tied head may be absent
    tokens = torch.randint(0, 96, (2, 21))
    with torch.no_grad():
        ours, theirs = m(tokens), ref.float().eval()(tokens).logits
    assert theirs.abs().max() > 1.0
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_sliding_window_matches_mistral(backend: str) -> None:
    from transformers import MistralConfig, MistralForCausalLM

    m = _tiny("arch.attention.sliding_window=5", "arch.attention.n_heads=4", "arch.attention.n_kv_heads=2",
              backend=backend)
    cfg = MistralConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=5,
                        rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                        attn_implementation="eager", tie_word_embeddings=False)
    _compare(m, MistralForCausalLM(cfg), to_hf_names(m.state_dict()))


def test_sliding_window_actually_limits_attention() -> None:
    m = _tiny("arch.attention.sliding_window=3")
    tokens = torch.randint(0, 96, (1, 12))
    changed = tokens.clone()
    changed[0, 0] = (tokens[0, 0] + 1) % 96
    with torch.no_grad():
        a, b = m(tokens), m(changed)
    # two layers of window 3 reach back 4 positions: position 8 cannot see position 0
    torch.testing.assert_close(a[0, 8:], b[0, 8:], atol=1e-5, rtol=1e-5)
    assert (a[0, 1] - b[0, 1]).abs().max() > 1e-3


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_layernorm_and_qkv_bias_match_stablelm(backend: str) -> None:
    from transformers import StableLmConfig, StableLmForCausalLM

    m = _tiny("arch.norm={kind: layernorm, eps: 1.0e-5}", "arch.attention.qkv_bias=true", backend=backend)
    cfg = StableLmConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=32, num_key_value_heads=32, partial_rotary_factor=1.0,
                         layer_norm_eps=1e-5, use_qkv_bias=True, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                         attn_implementation="eager", tie_word_embeddings=False)
    _compare(m, StableLmForCausalLM(cfg), to_hf_names(m.state_dict()))


@pytest.mark.parametrize("act,hf_act", [("gelu_tanh", "gelu_pytorch_tanh"), ("gelu", "gelu")])
def test_gelu_mlp_layernorm_biases_tied_match_starcoder2(act: str, hf_act: str) -> None:
    from transformers import Starcoder2Config, Starcoder2ForCausalLM

    m = _tiny(f"arch.ffn={{kind: gelu-mlp, hidden_dim: 128, activation: {act}, bias: true}}",
              "arch.norm={kind: layernorm, eps: 1.0e-5}", "arch.attention.n_heads=8", "arch.attention.n_kv_heads=2",
              "arch.attention.qkv_bias=true", "arch.attention.o_bias=true", "arch.tie_embeddings=true",
              "arch.attention.sliding_window=7")
    cfg = Starcoder2Config(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=8, num_key_value_heads=2, hidden_act=hf_act, norm_epsilon=1e-5,
                           use_bias=True, tie_word_embeddings=True, sliding_window=7,
                           rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, attn_implementation="eager")
    names = dict(HF_BLOCK_NAMES, **{"ffn.up": "mlp.c_fc", "ffn.down": "mlp.c_proj"})
    _compare(m, Starcoder2ForCausalLM(cfg), to_hf_names(m.state_dict(), names))


def test_mixed_stack_by_layer_range_runs_and_differs_per_layer() -> None:
    m = _tiny('arch.layers={"1": {ffn: {kind: gelu-mlp, hidden_dim: 32}, attention: {n_heads: 2, head_dim: 8}}}')
    assert type(m.blocks[0].ffn).__name__ == "GatedFFN" and type(m.blocks[1].ffn).__name__ == "MLP"
    assert m.blocks[1].attn.q.weight.shape == (16, 64)
    n_ir = zoo.compile(m.spec).accounting.params
    assert n_ir == sum(p.numel() for p in m.parameters())
    tokens = torch.randint(0, 96, (1, 9))
    with torch.no_grad():
        full = m(tokens)
        cache = m.new_cache(1, 16)
        steps = torch.cat([m(tokens[:, :4], cache=cache)] + [m(tokens[:, t:t + 1], cache=cache) for t in range(4, 9)], 1)
    torch.testing.assert_close(steps, full, atol=1e-4, rtol=1e-4)
