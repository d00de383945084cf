"""Reference models for parity tests: transformers classes configured like a zoo spec and
loaded with the zoo model's weights (strict), in float32 with eager attention."""

from __future__ import annotations

from typing import Any

import torch

HF_LLAMA_NAMES = {
    "embed.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "norm.bias": "model.norm.bias",
    "output.weight": "lm_head.weight",
}
HF_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn.q": "self_attn.q_proj",
    "attn.k": "self_attn.k_proj",
    "attn.v": "self_attn.v_proj",
    "attn.o": "self_attn.o_proj",
    "ffn.gate": "mlp.gate_proj",
    "ffn.up": "mlp.up_proj",
    "ffn.down": "mlp.down_proj",
}


def to_hf_names(state: dict[str, torch.Tensor], block_names: dict[str, str] = HF_BLOCK_NAMES,
                layers: str = "model.layers") -> dict[str, torch.Tensor]:
    out = {}
    for name, t in state.items():
        if name in HF_LLAMA_NAMES:
            out[HF_LLAMA_NAMES[name]] = t
            continue
        _, i, rest = name.split(".", 2)
        mod, _, leaf = rest.rpartition(".")
        out[f"{layers}.{i}.{block_names[mod]}.{leaf}"] = t
    return out


def hf_llama_config(spec: Any, **extra: Any):  # type: ignore[no-untyped-def]
    from transformers import LlamaConfig

    a = spec.arch
    blk = a.block(0)
    att, ffn = blk.attention, blk.ffn
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": att.rope.theta}
    if att.rope.scaling:
        rope = {"rope_type": "linear", "factor": att.rope.scaling.factor, "rope_theta": att.rope.theta}
    act = {"swiglu": "silu", "geglu": {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}.get(getattr(ffn, "activation", ""), "")}[ffn.kind]
    cfg = dict(vocab_size=a.vocab_size, hidden_size=a.dim, intermediate_size=ffn.hidden_dim, num_hidden_layers=a.n_layers,
               num_attention_heads=att.n_heads, num_key_value_heads=att.n_kv_heads, head_dim=att.head_dim,
               rms_norm_eps=blk.norm.eps, max_position_embeddings=a.max_seq_len, tie_word_embeddings=a.tie_embeddings,
               attention_bias=att.qkv_bias, mlp_bias=ffn.bias, hidden_act=act, rope_parameters=rope,
               attn_implementation="eager", bos_token_id=1, eos_token_id=2, pad_token_id=0)
    cfg.update(extra)
    return LlamaConfig(**cfg)


def hf_llama_from(model: Any):  # type: ignore[no-untyped-def]
    """A transformers LlamaForCausalLM holding exactly `model`'s weights."""
    from transformers import LlamaForCausalLM

    from zoo.formats.export import external_state  # the same key map zoo imports and exports with

    ref = LlamaForCausalLM(hf_llama_config(model.spec)).float().eval()
    state = {k: v.detach().float() for k, v in external_state(model, "hf-llama").items()}
    missing, unexpected = ref.load_state_dict(state, strict=not model.spec.arch.tie_embeddings)
    if model.spec.arch.tie_embeddings:
        assert unexpected == [] and set(missing) <= {"lm_head.weight"}
    return ref


def check_decoding(model: Any, ref: Any, atol: float = 1e-4, rtol: float = 1e-4) -> None:
    """KV-cache decoding (a 5-token prefill, then one token a step) equals `model`'s full
    forward, and its greedy tokens equal the transformers reference's `generate`."""
    prompt = torch.randint(3, model.spec.arch.language_model().vocab_size, (1, 9))
    with torch.no_grad():
        full = model(prompt)
        cache = model.new_cache(1, 32)
        steps = [model(prompt[:, :5], cache=cache)] + [model(prompt[:, i:i + 1], cache=cache) for i in range(5, 9)]
        torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=atol, rtol=rtol)
        ours = model.generate(prompt, max_new_tokens=8, stop_tokens=[])
        theirs = ref.generate(prompt, max_new_tokens=8, do_sample=False, eos_token_id=None)[0, 9:].tolist()
    assert ours[0] == theirs
