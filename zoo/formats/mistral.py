"""Mistral's consolidated checkpoints: `params.json` + `consolidated.safetensors` (+ `tekken.json`).

The layout mistral-inference reads (`Transformer.from_folder`): Meta's tensor names for the
decoder, and for Pixtral a `vision_encoder` section in params.json with the vision tower
(`vision_encoder.*`) and the adapter (`vision_language_adapter.*`) beside it. The key map is
specs/formats/mistral.yaml; this module reads and writes params.json and the tensors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import CheckpointError, SafetensorsSource, read_header
from ..checkpoint.tensors import write_safetensors
from ..compiler.schema import (
    Attention,
    Decoder,
    MLPAdapter,
    ModelSpec,
    RMSNorm,
    Rope,
    Rope2D,
    SwiGLU,
    TokenizerSpec,
    VisionEncoder,
    VisionLanguage,
)
from .transforms import READ_ERRORS, FormatError, unreadable

PARAMS_FILE = "params.json"
TENSORS_FILE = "consolidated.safetensors"
TOKENIZER_FILE = "tekken.json"
#: mistral-inference's defaults: RoPE theta when params.json has none, the vision blocks' eps.
DEFAULT_THETA = 1_000_000.0
VISION_EPS = 1e-5


def is_mistral_folder(folder: Path) -> bool:
    """params.json beside consolidated*.safetensors (Meta's folders hold .pth files)."""
    return (folder / PARAMS_FILE).is_file() and any(folder.glob("consolidated*.safetensors"))


class MistralSource(SafetensorsSource):
    """The tensors of consolidated*.safetensors only (Mistral's Hub repos may also hold a
    transformers copy of the same weights as model-*.safetensors)."""

    def __init__(self, folder: Path):  # the parent's attributes, from other files
        self.where = str(folder)
        paths = sorted(Path(folder).glob("consolidated*.safetensors"))
        if not paths:
            raise CheckpointError(f"{folder}: no consolidated*.safetensors")
        self.headers = {p: read_header(p) for p in paths}
        self.files = {name: p for p in paths for name in self.headers[p]}
        self._maps = {}
        for p in paths:  # mapped now: the files stay these even if the folder is replaced
            self._map(p)


def spec_from_mistral_params(params: Mapping[str, Any], name: str, tokenizer_file: str | None = None) -> ModelSpec:
    """A spec from Mistral's params.json: a decoder, or a vision-language model when it has a
    `vision_encoder` section (Pixtral). FormatError names what the zoo cannot express."""
    try:
        if params.get("moe"):
            raise FormatError(f"params.json of {name}: mixture-of-experts consolidated checkpoints are not "
                              "supported yet (load the transformers copy)")
        window = params.get("sliding_window")
        if isinstance(window, list):
            raise FormatError(f"params.json of {name}: per-layer sliding windows are not supported")
        att = Attention(n_heads=params["n_heads"], n_kv_heads=params.get("n_kv_heads"), head_dim=params.get("head_dim"),
                        sliding_window=window, rope=Rope(theta=params.get("rope_theta") or DEFAULT_THETA))
        text = Decoder(dim=params["dim"], n_layers=params["n_layers"], vocab_size=params["vocab_size"],
                       max_seq_len=params.get("max_seq_len") or params.get("max_position_embeddings") or 131072,
                       attention=att, ffn=SwiGLU(hidden_dim=params["hidden_dim"]),
                       norm=RMSNorm(eps=params.get("norm_eps", 1e-5)),
                       tie_embeddings=params.get("tied_embeddings", False))
        tok = TokenizerSpec(kind="tekken", file=tokenizer_file, bos_id=1, eos_id=2, pad_id=None) \
            if tokenizer_file else None
        v = params.get("vision_encoder")
        if not v:
            return ModelSpec(name=name, family="mistral", description=f"imported from Mistral consolidated weights "
                             f"({name})", arch=text, tokenizer=tok)
        unsupported = [k for k, bad in (("mm_projector_id", v.get("mm_projector_id") not in (None, "")),
                                        ("spatial_merge_size", v.get("spatial_merge_size", 1) != 1),
                                        ("add_pre_mm_projector_layer_norm", v.get("add_pre_mm_projector_layer_norm", False)
                                         not in (False, None)))
                       if bad]
        if unsupported:
            raise FormatError(f"params.json of {name}: vision_encoder {', '.join(unsupported)} (a patch merger or "
                              "pre-projector norm, Mistral Small 3.1's) are not supported yet")
        vision = VisionEncoder(dim=v["hidden_size"], n_layers=v["num_hidden_layers"], image_size=v["image_size"],
                               patch_size=v["patch_size"], channels=v.get("num_channels", 3),
                               attention=Attention(n_heads=v["num_attention_heads"],
                                                   rope=Rope2D(theta=v.get("rope_theta", 10000.0))),
                               ffn=SwiGLU(hidden_dim=v["intermediate_size"]), norm=RMSNorm(eps=VISION_EPS))
        arch = VisionLanguage(vision=vision, adapter=MLPAdapter(hidden_dim=text.dim, activation="gelu", bias=v.get("adapter_bias", True)),
                              text=text, image_token_id=v.get("image_token_id", 10),
                              image_break_id=v.get("image_break_token_id"), image_end_id=v.get("image_end_token_id"))
        return ModelSpec(name=name, family="pixtral", description=f"imported from Mistral consolidated weights ({name})",
                         arch=arch, tokenizer=tok)
    except READ_ERRORS as e:
        if isinstance(e, FormatError):
            raise
        raise unreadable(f"params.json of {name}: cannot read it", e) from None


def mistral_params(spec: ModelSpec) -> dict[str, Any]:
    """params.json for a spec mistral-inference can run (FormatError naming what it cannot)."""
    a = spec.arch
    text = a.language_model()
    blk = text.block(0)
    att, ffn = blk.attention, blk.ffn
    why = None
    if text.layers or text.heads.head_blocks:
        why = "per-layer overrides or extra heads"
    elif att.qkv_bias or att.o_bias or ffn.kind != "swiglu" or ffn.bias:
        why = "attention biases or an FFN other than bias-free SwiGLU"
    elif blk.norm.kind != "rmsnorm" or text.norm.kind != "rmsnorm" or att.rope is None or att.rope.scaling:
        why = "a norm other than RMSNorm, no RoPE or RoPE scaling"
    if why:
        raise FormatError(f"{spec.name}: Mistral's format cannot express {why}")
    out: dict[str, Any] = {"dim": text.dim, "n_layers": text.n_layers, "head_dim": att.head_dim,
                           "hidden_dim": ffn.hidden_dim, "n_heads": att.n_heads, "n_kv_heads": att.n_kv_heads,
                           "rope_theta": att.rope.theta, "norm_eps": blk.norm.eps, "vocab_size": text.vocab_size,
                           "max_seq_len": text.max_seq_len}
    if att.sliding_window:
        out["sliding_window"] = att.sliding_window
    if text.tie_embeddings:
        out["tied_embeddings"] = True
    if a is not text:  # a vision-language model (Pixtral)
        out["vision_encoder"] = _vision_params(spec)
    return out


def _vision_params(spec: ModelSpec) -> dict[str, Any]:
    a = spec.arch
    v, blk = a.vision, a.vision.block()
    why = None
    if v.ffn.kind != "swiglu" or blk.ffn.bias or v.attention.qkv_bias or v.attention.o_bias or v.patch_bias:
        why = "a vision FFN other than bias-free SwiGLU, or vision biases"
    elif v.norm.kind != "rmsnorm" or v.norm.eps != VISION_EPS:
        why = f"a vision norm other than RMSNorm with eps {VISION_EPS:g}"
    elif blk.attention.head_dim * v.attention.n_heads != v.dim:
        why = "a vision head_dim other than dim / n_heads"
    elif a.adapter.activation != "gelu" or a.adapter_hidden_dim != a.text.dim:
        why = "an adapter other than GELU with the text model's width"
    if why:
        raise FormatError(f"{spec.name}: Mistral's format cannot express {why}")
    out = {"hidden_size": v.dim, "num_channels": v.channels, "image_size": v.image_size, "patch_size": v.patch_size,
           "rope_theta": v.attention.rope.theta, "intermediate_size": blk.ffn.hidden_dim,
           "num_hidden_layers": v.n_layers, "num_attention_heads": v.attention.n_heads,
           "image_token_id": a.image_token_id, "adapter_bias": a.adapter.bias}
    if a.image_break_id is not None:
        out["image_break_token_id"] = a.image_break_id
    if a.image_end_id is not None:
        out["image_end_token_id"] = a.image_end_id
    return out


def write_mistral(external: Mapping[str, torch.Tensor], params: dict[str, Any], folder: Path) -> list[str]:
    """consolidated.safetensors + params.json."""
    tensors = {k: t.detach().cpu().contiguous() for k, t in external.items()}
    write_safetensors(tensors, Path(folder) / TENSORS_FILE, metadata={"format": "pt"})
    (Path(folder) / PARAMS_FILE).write_text(json.dumps(params, indent=2) + "\n")
    return [TENSORS_FILE, PARAMS_FILE]
