"""transformers' config.json, both ways, for the families transformers and zoo share: which
`model_type` reads with which zoo key map, which class runs a spec, and the config itself.

One module per transformers family: llama.py (Llama, and Mixtral through mixtral.py), llava.py
(Llava with a Pixtral tower, Mistral decoder). Each zoo arch kind is served by one of them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ...compiler.schema import ModelSpec
from ..transforms import FormatError
from . import llama, llava

MODEL_TYPES = {"llama": "hf-llama", "mixtral": "hf-mixtral", "llava": "hf-llava"}  # model_type -> zoo format
ARCHITECTURES = {"hf-llama": "LlamaForCausalLM", "hf-mixtral": "MixtralForCausalLM",
                 "hf-mixtral-fused": "MixtralForCausalLM", "hf-llava": "LlavaForConditionalGeneration",
                 "hf-llava-model": "LlavaForConditionalGeneration"}
# zoo arch kind -> (why transformers cannot run it, its zoo format, its config.json)
_FAMILIES = {"decoder": (llama.llama_unsupported, llama.llama_format, llama.to_llama_config),
             "vision-language": (llava.llava_unsupported, lambda spec: "hf-llava", llava.to_llava_config)}
_READERS = {"llava": llava.spec_from_llava_config}  # model_type -> reader (default: Llama's)


def hf_unsupported(spec: ModelSpec) -> str | None:
    """Why no transformers class runs `spec`, or None when one does.

    Beyond each family's own refusals, the config.json it would write is read back and the
    model that describes is compared with `spec`, record by record as the runtime builds them:
    anything the config cannot carry (a kind or a field added to zoo and not to the family's
    mapping) is a difference, so a folder transformers would load with other math is never
    written."""
    family = _FAMILIES.get(spec.arch.kind_name)
    if family is None:
        return f"{spec.arch.kind_name} models have no transformers class"
    why = family[0](spec)
    if why:
        return why
    cfg = family[2](spec, None)
    diff = _difference(_records(spec), _records(spec_from_hf_config(cfg, spec.name)))
    return f"transformers' {cfg['architectures'][0]} config cannot express {diff}" if diff else None


def _records(spec: ModelSpec) -> Any:
    """What the runtime builds `spec` from: every block's components, sizes derived."""
    return spec.arch.config(spec.arch.ir(""))


def _difference(a: Any, b: Any, at: str = "") -> str | None:
    """The first path where two runtime records differ (None when equal)."""
    if a == b:
        return None
    if dataclasses.is_dataclass(a) and type(a) is type(b):
        for f in dataclasses.fields(a):
            d = _difference(getattr(a, f.name), getattr(b, f.name), f"{at}.{f.name}" if at else f.name)
            if d:
                return d
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            d = _difference(x, y, f"{at}[{i}]")
            if d:
                return d
    return f"{at or 'the model'} ({a!r}, read back as {b!r})"


def hf_format(spec: ModelSpec) -> str:
    """The zoo format of the transformers class that runs `spec`."""
    return _FAMILIES[spec.arch.kind_name][1](spec)


def to_hf_config(spec: ModelSpec, dtype: torch.dtype | None = None) -> dict[str, Any]:
    """config.json for `spec` (FormatError when transformers cannot express it)."""
    why = hf_unsupported(spec)
    if why:
        raise FormatError(f"{spec.name}: no transformers config: {why}")
    return _FAMILIES[spec.arch.kind_name][2](spec, dtype)


def spec_from_hf_config(cfg: dict[str, Any], name: str, tokenizer_file: str | None = None) -> ModelSpec:
    """A zoo spec from a transformers config.json (for folders without zoo.yaml)."""
    return _READERS.get(cfg.get("model_type"), llama.spec_from_llama_config)(cfg, name, tokenizer_file)


def generation_config(spec: ModelSpec) -> dict[str, Any]:
    tok = spec.tokenizer
    return {"bos_token_id": tok.bos_id if tok else None, "eos_token_id": tok.eos_id if tok else None}


__all__ = ["ARCHITECTURES", "MODEL_TYPES", "generation_config", "hf_format", "hf_unsupported", "spec_from_hf_config",
           "to_hf_config"]
