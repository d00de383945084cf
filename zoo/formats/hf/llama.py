"""transformers' LlamaConfig (and, through mixtral.py, MixtralConfig), both ways.

Written by hand rather than through `transformers.LlamaConfig` so that saving never imports
transformers (a test-only dependency). The keys are the ones `LlamaConfig.to_dict()` writes; RoPE
goes both in transformers 5's `rope_parameters` and in the v4 `rope_theta`/`rope_scaling`, so
either major version reads the folder. A spec transformers' Llama cannot express (per-layer
overrides, layernorm, a sliding window, different q/k/v and o biases …) gets no config.json:
`llama_unsupported` says why, and the card repeats it.
"""

from __future__ import annotations

from typing import Any

import torch

from ...compiler.schema import (
    Attention,
    Decoder,
    DenseFFN,
    ModelSpec,
    RMSNorm,
    Rope,
    TokenizerSpec,
)
from ..transforms import READ_ERRORS, FormatError, unreadable
from . import mixtral

#: transformers' activation names -> the runtime's, and back (the first name wins)
ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh",
               "gelu_new": "gelu_tanh", "relu": "relu"}
HF_ACTIVATION = {ours: theirs for theirs, ours in reversed(list(ACTIVATIONS.items()))}


def gated_act(ffn: Any) -> str | None:
    """transformers' hidden_act for a dense FFN that its gated MLP (LlamaMLP) computes."""
    return HF_ACTIVATION.get(ffn.act) if isinstance(ffn, DenseFFN) and ffn.gated else None


def ffn_from_act(hidden_act: str, **fields: Any) -> DenseFFN:
    """The gated FFN kind computing transformers' `hidden_act`."""
    act = ACTIVATIONS.get(hidden_act)
    ffn = DenseFFN.gated_for(act, **fields) if act else None
    if ffn is None:
        raise FormatError(f"hidden_act {hidden_act!r} has no zoo FFN kind")
    return ffn


def llama_unsupported(spec: ModelSpec) -> str | None:
    """Why transformers' LlamaForCausalLM (or Mixtral, for MoE) cannot run this decoder spec,
    or None when it can."""
    a = spec.arch
    if a.layers:
        return "per-layer overrides have no transformers equivalent"
    if a.heads.head_blocks:
        return f"{a.heads.kind_name} heads"
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
    if mixtral.is_moe(ffn):  # MixtralForCausalLM
        return mixtral.mixtral_unsupported(spec)
    if gated_act(ffn) is None:
        return f"{ffn.describe()} FFN (transformers' Llama MLP is gated)"
    return None


def llama_format(spec: ModelSpec) -> str:
    """The zoo format of the transformers class that runs this decoder spec."""
    return "hf-mixtral" if mixtral.is_moe(spec.arch.block(0).ffn) else "hf-llama"


def to_llama_config(spec: ModelSpec, dtype: torch.dtype | None = None) -> dict[str, Any]:
    """config.json for a decoder spec (FormatError when transformers cannot express it)."""
    why = llama_unsupported(spec)
    if why:
        raise FormatError(f"{spec.name}: no transformers config: {why}")
    a = spec.arch
    blk = a.block(0)
    att, ffn = blk.attention, blk.ffn
    assert att.rope is not None
    tok = spec.tokenizer
    out = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": a.vocab_size, "hidden_size": a.dim, "intermediate_size": ffn.hidden_dim,
        "num_hidden_layers": a.n_layers, "num_attention_heads": att.n_heads, "num_key_value_heads": att.n_kv_heads,
        "head_dim": att.head_dim, "hidden_act": gated_act(ffn.expert if mixtral.is_moe(ffn) else ffn),
        "max_position_embeddings": a.max_seq_len, "rms_norm_eps": blk.norm.eps, "tie_word_embeddings": a.tie_embeddings,
        "attention_bias": att.qkv_bias, "attention_dropout": 0.0, "mlp_bias": ffn.bias, "pretraining_tp": 1,
        **att.rope.hf_config(),
        "bos_token_id": tok.bos_id if tok else None, "eos_token_id": tok.eos_id if tok else None,
        "pad_token_id": tok.pad_id if tok else None, "initializer_range": 0.02, "use_cache": True,
        "dtype": str(dtype).removeprefix("torch.") if dtype is not None else None,
    }
    if mixtral.is_moe(ffn):
        return mixtral.to_mixtral_config(out, spec)
    return out


def spec_from_llama_config(cfg: dict[str, Any], name: str, tokenizer_file: str | None = None) -> ModelSpec:
    """A zoo spec from a transformers Llama or Mixtral config.json (for folders without zoo.yaml)."""
    try:
        mixtral_cfg = cfg.get("model_type") == "mixtral"
        att = Attention(n_heads=cfg["num_attention_heads"], n_kv_heads=cfg.get("num_key_value_heads"),
                        head_dim=cfg.get("head_dim"), qkv_bias=cfg.get("attention_bias", False),
                        o_bias=cfg.get("attention_bias", False), rope=Rope.from_hf_config(cfg),
                        sliding_window=cfg.get("sliding_window") if mixtral_cfg else None)
        ffn = ffn_from_act(cfg.get("hidden_act", "silu"), hidden_dim=cfg["intermediate_size"],
                           bias=cfg.get("mlp_bias", False))
        if mixtral_cfg:
            ffn = mixtral.moe_from_config(cfg, ffn)
        norm = RMSNorm(eps=cfg.get("rms_norm_eps", 1e-6))
        arch = Decoder(dim=cfg["hidden_size"], n_layers=cfg["num_hidden_layers"], vocab_size=cfg["vocab_size"],
                       max_seq_len=cfg.get("max_position_embeddings", 2048), attention=att, ffn=ffn, norm=norm,
                       tie_embeddings=cfg.get("tie_word_embeddings", False))
        tok = None
        if tokenizer_file:
            kind = "tekken" if tokenizer_file.endswith(".json") else "sentencepiece"
            tok = TokenizerSpec(kind=kind, file=tokenizer_file, bos_id=_first(cfg.get("bos_token_id")),
                                eos_id=_first(cfg.get("eos_token_id")), pad_id=_first(cfg.get("pad_token_id")))
        return ModelSpec(name=name, family=cfg.get("model_type"), description=f"imported from transformers ({name})",
                         arch=arch, tokenizer=tok)
    except READ_ERRORS as e:
        raise unreadable(f"config.json of {name}: cannot read it as a Llama config", e) from None


def _first(v: Any) -> int | None:
    return v[0] if isinstance(v, list) and v else v
