"""transformers' config.json, both ways.

Decoder families are data (family.py reads specs/formats/transformers/<model_type>.yaml): which
key map reads the tensors, how config keys map to spec fields, which keys must hold a value.
Llava (a Pixtral tower and a Mistral decoder, nested configs) keeps its Python (llava.py), built
on the Mistral family for its decoder.
"""

from __future__ import annotations

from typing import Any

import torch

from ...compiler.schema import ModelSpec
from ..keymap import get_format
from ..transforms import FormatError
from . import llava
from .family import (
    difference,
    express,
    families,
    family_for,
    family_of,
    parse_family,
    read_config,
    records,
)

LLAVA = {"model_type": "llava", "architecture": "LlavaForConditionalGeneration", "format": "hf-llava"}
LLAVA_FAMILY = parse_family(LLAVA, "llava.py")


def model_types() -> dict[str, str]:
    """model_type -> the zoo format (key map) its folders are read with."""
    return {**{t: f.format for t, f in families().items()}, LLAVA["model_type"]: LLAVA["format"]}


def architectures() -> dict[str, str]:
    """zoo format -> the transformers class whose folders it reads (the first family naming it)."""
    out: dict[str, str] = {}
    for fam in [*families().values(), LLAVA_FAMILY]:
        for fmt in (fam.format, *get_format(fam.format).alternatives):
            out.setdefault(fmt, fam.architecture)
    return out


def hf_unsupported(spec: ModelSpec) -> str | None:
    """Why no transformers class runs `spec`, or None when one does: the config.json a family
    would write is read back and the runtime records compared, so anything the config cannot
    carry is a difference and a folder transformers would load with other math is never written."""
    if spec.arch.kind_name == "vision-language":
        why = llava.llava_unsupported(spec)
        if why:
            return why
        cfg = llava.to_llava_config(spec, None)
        diff = difference(records(spec), records(llava.spec_from_llava_config(cfg, spec.name)))
        return f"transformers' LlavaForConditionalGeneration config cannot express {diff}" if diff else None
    if spec.arch.kind_name != "decoder":
        return f"{spec.arch.kind_name} models have no transformers class"
    if spec.arch.heads.head_blocks:  # type: ignore[attr-defined]
        return f"{spec.arch.heads.kind_name} heads"
    fam, why = family_for(spec)
    return None if fam is not None else why


def hf_format(spec: ModelSpec) -> str:
    """The zoo format of the transformers class that runs `spec`."""
    if spec.arch.kind_name == "vision-language":
        return LLAVA["format"]
    fam, why = family_for(spec)
    if fam is None:
        raise FormatError(f"{spec.name}: no transformers class runs it: {why}")
    return fam.format


def to_hf_config(spec: ModelSpec, dtype: torch.dtype | None = None) -> dict[str, Any]:
    """config.json for `spec` (FormatError when transformers cannot express it)."""
    why = hf_unsupported(spec)
    if why:
        raise FormatError(f"{spec.name}: no transformers config: {why}")
    if spec.arch.kind_name == "vision-language":
        return llava.to_llava_config(spec, dtype)
    fam, _ = family_for(spec)
    assert fam is not None
    cfg, why = express(spec, fam, dtype)
    assert cfg is not None, why
    return cfg


def spec_from_hf_config(cfg: dict[str, Any], name: str, tokenizer_file: str | None = None) -> ModelSpec:
    """A zoo spec from a transformers config.json (for folders without zoo.yaml)."""
    if cfg.get("model_type") == LLAVA["model_type"]:
        return llava.spec_from_llava_config(cfg, name, tokenizer_file)
    return read_config(cfg, name, tokenizer_file, family_of(cfg.get("model_type")))


def generation_config(spec: ModelSpec) -> dict[str, Any]:
    tok = spec.tokenizer
    return {"bos_token_id": tok.bos_id if tok else None, "eos_token_id": tok.eos_id if tok else None}


__all__ = ["architectures", "generation_config", "hf_format", "hf_unsupported", "model_types", "spec_from_hf_config",
           "to_hf_config"]
