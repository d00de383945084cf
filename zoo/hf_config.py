"""transformers' config.json for the families transformers knows, both ways.

Written by hand rather than through `transformers.LlamaConfig` so that saving never imports
transformers (a test-only dependency). The keys are the ones `LlamaConfig.to_dict()` writes; RoPE
goes both in transformers 5's `rope_parameters` and in the v4 `rope_theta`/`rope_scaling`, so
either major version reads the folder. A spec transformers' Llama cannot express (per-layer
overrides, layernorm, a sliding window, different q/k/v and o biases …) gets no config.json:
`hf_unsupported` says why, and the card repeats it.
"""

from __future__ import annotations

from typing import Any

import torch

from .compiler.schema import (Attention, Decoder, LinearScaling, ModelSpec, RMSNorm, Rope, SwiGLU, GeGLU,
                              TokenizerSpec)
from .formats.transforms import FormatError

MODEL_TYPES = {"llama": "hf-llama", "mixtral": "hf-mixtral", "llava": "hf-llava"}  # model_type -> zoo format
ARCHITECTURES = {"hf-llama": "LlamaForCausalLM", "hf-mixtral": "MixtralForCausalLM",
                 "hf-mixtral-fused": "MixtralForCausalLM", "hf-llava": "LlavaForConditionalGeneration",
                 "hf-llava-model": "LlavaForConditionalGeneration"}
_ACT = {("swiglu", None): "silu", ("geglu", "gelu"): "gelu", ("geglu", "gelu_tanh"): "gelu_pytorch_tanh"}
_FFN = {"silu": ("swiglu", None), "swish": ("swiglu", None), "gelu": ("geglu", "gelu"),
        "gelu_pytorch_tanh": ("geglu", "gelu_tanh"), "gelu_new": ("geglu", "gelu_tanh")}


def hf_unsupported(spec: ModelSpec) -> str | None:
    """Why transformers' LlamaForCausalLM cannot run this spec, or None when it can."""
    a = spec.arch
    if a.kind == "vision-language":  # LlavaForConditionalGeneration (Pixtral tower)
        from .hf_llava import llava_unsupported

        return llava_unsupported(spec)
    if a.kind != "decoder" or a.layers:
        return "per-layer overrides have no transformers equivalent"
    if a.heads.kind != "next_token":
        return f"{a.heads.kind} heads"
    blk = a.block(0)
    att, ffn, norm = blk.attention, blk.ffn, blk.norm
    if norm.kind != "rmsnorm" or a.norm.kind != "rmsnorm" or a.norm.eps != norm.eps:
        return "LlamaForCausalLM has RMSNorm with one eps"
    if att.sliding_window is not None:
        return "sliding-window attention"
    if att.rope is None:
        return "attention without RoPE"
    if att.qkv_bias != att.o_bias:
        return "LlamaConfig.attention_bias covers q, k, v and o together"
    if ffn.kind == "moe":  # MixtralForCausalLM
        from .hf_mixtral import mixtral_unsupported

        return mixtral_unsupported(spec)
    if (ffn.kind, getattr(ffn, "activation", None)) not in _ACT:
        return f"{ffn.kind} FFN"
    return None


def _act_key(ffn: Any) -> tuple[str, str | None]:
    f = ffn.expert if ffn.kind == "moe" else ffn  # Mixtral: SwiGLU experts
    return f.kind, getattr(f, "activation", None)


def hf_format(spec: ModelSpec) -> str:
    """The zoo format of the transformers class that runs `spec`."""
    if spec.arch.kind == "vision-language":
        return "hf-llava"
    return "hf-mixtral" if spec.arch.block(0).ffn.kind == "moe" else "hf-llama"


def to_hf_config(spec: ModelSpec, dtype: torch.dtype | None = None) -> dict[str, Any]:
    """config.json for `spec` (FormatError when transformers cannot express it)."""
    why = hf_unsupported(spec)
    if why:
        raise FormatError(f"{spec.name}: no transformers config: {why}")
    if spec.arch.kind == "vision-language":
        from .hf_llava import to_llava_config

        return to_llava_config(spec, dtype)
    a = spec.arch
    blk = a.block(0)
    att, ffn = blk.attention, blk.ffn
    assert att.rope is not None
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": att.rope.theta}
    scaling = None
    if att.rope.scaling is not None:
        scaling = {"rope_type": "linear", "factor": att.rope.scaling.factor}
        rope = {**scaling, "rope_theta": att.rope.theta}
    tok = spec.tokenizer
    out = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": a.vocab_size, "hidden_size": a.dim, "intermediate_size": ffn.hidden_dim,
        "num_hidden_layers": a.n_layers, "num_attention_heads": att.n_heads, "num_key_value_heads": att.n_kv_heads,
        "head_dim": att.head_dim, "hidden_act": _ACT[_act_key(ffn)],
        "max_position_embeddings": a.max_seq_len, "rms_norm_eps": blk.norm.eps, "tie_word_embeddings": a.tie_embeddings,
        "attention_bias": att.qkv_bias, "attention_dropout": 0.0, "mlp_bias": ffn.bias, "pretraining_tp": 1,
        "rope_parameters": rope, "rope_theta": att.rope.theta, "rope_scaling": scaling,
        "bos_token_id": tok.bos_id if tok else None, "eos_token_id": tok.eos_id if tok else None,
        "pad_token_id": tok.pad_id if tok else None, "initializer_range": 0.02, "use_cache": True,
        "dtype": str(dtype).removeprefix("torch.") if dtype is not None else None,
    }
    if ffn.kind == "moe":
        from .hf_mixtral import to_mixtral_config

        return to_mixtral_config(out, spec)
    return out


def generation_config(spec: ModelSpec) -> dict[str, Any]:
    tok = spec.tokenizer
    return {"bos_token_id": tok.bos_id if tok else None, "eos_token_id": tok.eos_id if tok else None}


def _rope(cfg: dict[str, Any]) -> Rope:
    params = cfg.get("rope_parameters") or {}
    theta = float(params.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    scaling = cfg.get("rope_scaling") or (params if params.get("rope_type", "default") != "default" else None)
    if scaling:
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind != "linear":
            raise FormatError(f"config.json: RoPE scaling {kind!r} is not supported yet (only linear)")
        return Rope(theta=theta, scaling=LinearScaling(factor=float(scaling["factor"])))
    return Rope(theta=theta)


def spec_from_hf_config(cfg: dict[str, Any], name: str, tokenizer_file: str | None = None) -> ModelSpec:
    """A zoo spec from a transformers Llama config.json (for folders without zoo.yaml)."""
    if cfg.get("model_type") == "llava":
        from .hf_llava import spec_from_llava_config

        return spec_from_llava_config(cfg, name, tokenizer_file)
    try:
        kind, act = _FFN[cfg.get("hidden_act", "silu")]
        heads = int(cfg["num_attention_heads"])
        att = Attention(n_heads=heads, n_kv_heads=int(cfg.get("num_key_value_heads") or heads),
                        head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
                        qkv_bias=bool(cfg.get("attention_bias", False)), o_bias=bool(cfg.get("attention_bias", False)),
                        rope=_rope(cfg))
        bias = bool(cfg.get("mlp_bias", False))
        ffn = SwiGLU(hidden_dim=cfg["intermediate_size"], bias=bias) if kind == "swiglu" else \
            GeGLU(hidden_dim=cfg["intermediate_size"], bias=bias, activation=act)
        if cfg.get("model_type") == "mixtral":
            from .hf_mixtral import moe_from_config

            ffn = moe_from_config(cfg)
            att = att.model_copy(update={"sliding_window": cfg.get("sliding_window")})
        norm = RMSNorm(eps=float(cfg.get("rms_norm_eps", 1e-6)))
        arch = Decoder(dim=cfg["hidden_size"], n_layers=cfg["num_hidden_layers"], vocab_size=cfg["vocab_size"],
                       max_seq_len=cfg.get("max_position_embeddings", 2048), attention=att, ffn=ffn, norm=norm,
                       tie_embeddings=bool(cfg.get("tie_word_embeddings", False)))
        tok = None
        if tokenizer_file:
            kind = "tekken" if tokenizer_file.endswith(".json") else "sentencepiece"
            tok = TokenizerSpec(kind=kind, file=tokenizer_file, bos_id=_first(cfg.get("bos_token_id")),
                                eos_id=_first(cfg.get("eos_token_id")), pad_id=_first(cfg.get("pad_token_id")))
        return ModelSpec(name=name, family=cfg.get("model_type"), description=f"imported from transformers ({name})",
                         arch=arch, tokenizer=tok)
    except (KeyError, TypeError, ValueError) as e:
        raise FormatError(f"config.json of {name}: cannot read it as a Llama config ({type(e).__name__}: {e})") from None


def _first(v: Any) -> int | None:
    return v[0] if isinstance(v, list) and v else v
