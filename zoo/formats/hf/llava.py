"""transformers' LlavaForConditionalGeneration config.json for Pixtral-shaped vision-language
specs, both ways: a Mistral text config (the mistral family's, family.py), a Pixtral
vision config, and the projector.

What transformers fixes and the zoo must match: the vision blocks are bias-free RMSNorm
(eps 1e-5) blocks with a gated FFN and head_dim = hidden/heads; the projector is
Linear(vision → text) → act → Linear(text → text); features are the last layer's, all patches
(`vision_feature_layer: -1`, `vision_feature_select_strategy: full`).
"""

from __future__ import annotations

from typing import Any

import torch

from ...compiler.schema import (
    Attention,
    MLPAdapter,
    ModelSpec,
    RMSNorm,
    Rope2D,
    TokenizerSpec,
    VisionEncoder,
    VisionLanguage,
)
from ..transforms import READ_ERRORS, FormatError, unreadable
from .converters import ACTIVATIONS, HF_ACTIVATION, ffn_from_act, gated_act
from .family import express, families, read_config

_NOT_NESTED = ("architectures", "dtype")  # the outer config's
#: MistralConfig's and PixtralVisionConfig's defaults, for keys a config.json leaves out.
MISTRAL_DEFAULTS = {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                    "num_attention_heads": 32, "num_key_value_heads": 8, "hidden_act": "silu",
                    "max_position_embeddings": 4096 * 32, "rms_norm_eps": 1e-6, "rope_theta": 10000.0}
PIXTRAL_DEFAULTS = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
                    "num_channels": 3, "image_size": 1024, "patch_size": 16, "hidden_act": "gelu", "rope_theta": 10000.0}
VISION_EPS = 1e-5  # hard-coded in transformers' PixtralRMSNorm use


def _text_spec(spec: ModelSpec) -> ModelSpec:
    return ModelSpec(name=spec.name, arch=spec.arch.text, tokenizer=spec.tokenizer)


def llava_unsupported(spec: ModelSpec) -> str | None:
    """Why LlavaForConditionalGeneration (Pixtral tower, Mistral decoder) cannot run `spec`."""
    a = spec.arch
    text = a.text
    cfg, why = express(_text_spec(spec), families()["mistral"])
    if cfg is None:
        return f"its decoder: {why}"
    tb = text.block(0)
    if not gated_act(tb.ffn) or tb.ffn.bias or tb.attention.qkv_bias or tb.attention.o_bias:
        return "MistralForCausalLM has a dense bias-free FFN and no attention biases"
    v, vb = a.vision, a.vision.block()
    if not gated_act(vb.ffn) or vb.ffn.bias:
        return f"a {vb.ffn.describe()} vision FFN (transformers' Pixtral has a bias-free gated one)"
    if v.norm.kind != "rmsnorm" or v.norm.eps != VISION_EPS:
        return f"vision norms other than RMSNorm with eps {VISION_EPS:g}"
    if v.attention.qkv_bias or v.attention.o_bias or v.patch_bias:
        return "vision biases"
    if vb.attention.head_dim * v.attention.n_heads != v.dim:
        return "a vision head_dim other than dim / n_heads"
    if a.adapter_hidden_dim != text.dim:
        return "an adapter whose hidden width is not the text model's"
    return None


def to_llava_config(spec: ModelSpec, dtype: torch.dtype | None = None) -> dict[str, Any]:
    a = spec.arch
    text, why = express(_text_spec(spec), families()["mistral"])
    if text is None:
        raise FormatError(f"{spec.name}: its decoder has no Mistral config: {why}")
    text = {k: v for k, v in text.items() if k not in _NOT_NESTED}
    v, vb = a.vision, a.vision.block()
    theta = v.attention.rope.theta
    vision = {"model_type": "pixtral", "hidden_size": v.dim, "intermediate_size": vb.ffn.hidden_dim,
              "num_hidden_layers": v.n_layers, "num_attention_heads": v.attention.n_heads,
              "num_channels": v.channels, "image_size": v.image_size, "patch_size": v.patch_size,
              "head_dim": vb.attention.head_dim,
              "hidden_act": gated_act(vb.ffn),
              "rope_parameters": {"rope_type": "axial", "rope_theta": theta}, "rope_theta": theta,
              "attention_dropout": 0.0, "initializer_range": 0.02}
    return {"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava",
            "image_token_index": a.image_token_id, "projector_hidden_act": HF_ACTIVATION[a.adapter.activation],
            "multimodal_projector_bias": a.adapter.bias, "vision_feature_layer": -1,
            "vision_feature_select_strategy": "full", "tie_word_embeddings": a.text.tie_embeddings,
            "text_config": text, "vision_config": vision,
            "dtype": str(dtype).removeprefix("torch.") if dtype is not None else None}


def spec_from_llava_config(cfg: dict[str, Any], name: str, tokenizer_file: str | None = None) -> ModelSpec:
    """A vision-language spec from a Llava config.json with a Pixtral vision tower."""
    try:
        return _spec_from_llava_config(cfg, name, tokenizer_file)
    except READ_ERRORS as e:
        if isinstance(e, FormatError):
            raise
        raise unreadable(f"config.json of {name}: cannot read it as a Llava config", e) from None


def _spec_from_llava_config(cfg: dict[str, Any], name: str, tokenizer_file: str | None) -> ModelSpec:
    vcfg = {**PIXTRAL_DEFAULTS, **(cfg.get("vision_config") or {})}
    tcfg = {**MISTRAL_DEFAULTS, **(cfg.get("text_config") or {})}
    if vcfg.get("model_type", "pixtral") != "pixtral":
        raise FormatError(f"config.json of {name}: a {vcfg.get('model_type')!r} vision tower; the zoo reads Llava "
                          "with a Pixtral tower")
    layer, strategy = cfg.get("vision_feature_layer", -2), cfg.get("vision_feature_select_strategy", "default")
    if layer not in (-1, [-1]) or strategy != "full":
        raise FormatError(f"config.json of {name}: vision_feature_layer {layer!r} / vision_feature_select_strategy "
                          f"{strategy!r}; Pixtral uses the last layer's features, all of them (-1, 'full')")
    act = ACTIVATIONS.get(cfg.get("projector_hidden_act", "gelu"))
    vision_act = ACTIVATIONS.get(vcfg["hidden_act"])
    if act is None or vision_act is None:
        raise FormatError(f"config.json of {name}: projector_hidden_act {cfg.get('projector_hidden_act')!r} or vision "
                          f"hidden_act {vcfg['hidden_act']!r} is not supported")
    if "tie_word_embeddings" in cfg:
        tcfg["tie_word_embeddings"] = cfg["tie_word_embeddings"]
    text = read_config({**tcfg, "model_type": "mistral"}, name, family=families()["mistral"]).arch
    ffn = ffn_from_act(vcfg["hidden_act"], hidden_dim=vcfg["intermediate_size"])
    theta = (vcfg.get("rope_parameters") or {}).get("rope_theta", vcfg.get("rope_theta", 10000.0))
    vision = VisionEncoder(dim=vcfg["hidden_size"], n_layers=vcfg["num_hidden_layers"],
                           image_size=vcfg["image_size"], patch_size=vcfg["patch_size"],
                           channels=vcfg["num_channels"],
                           attention=Attention(n_heads=vcfg["num_attention_heads"], rope=Rope2D(theta=theta)),
                           ffn=ffn, norm=RMSNorm(eps=VISION_EPS))
    vocab = text.vocab_size
    pixtral_ids = vocab > 13  # Pixtral's [IMG_BREAK] 12, [IMG_END] 13 (in its processor, not config.json)
    arch = VisionLanguage(vision=vision, adapter=MLPAdapter(hidden_dim=text.dim, activation=act,
                                                            bias=cfg.get("multimodal_projector_bias", True)),
                          text=text, image_token_id=cfg.get("image_token_index", 10),
                          image_break_id=12 if pixtral_ids else None, image_end_id=13 if pixtral_ids else None)
    tok = None
    if tokenizer_file:
        kind = "tekken" if tokenizer_file.endswith(".json") else "sentencepiece"
        tok = TokenizerSpec(kind=kind, file=tokenizer_file, bos_id=1, eos_id=2, pad_id=None)
    return ModelSpec(name=name, family="pixtral", description=f"imported from transformers ({name})", arch=arch,
                     tokenizer=tok)
