"""transformers' config.json, both ways, for the families transformers and zoo share: which
`model_type` reads with which zoo key map, which class runs a spec, and the config itself.

One module per transformers family: llama.py (Llama, and Mixtral through mixtral.py), llava.py
(Llava with a Pixtral tower, Mistral decoder). Each zoo arch kind is served by one of them.
"""

from __future__ import annotations

from typing import Any

import torch

from ...compiler.schema import ModelSpec
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
    """Why no transformers class runs `spec`, or None when one does."""
    family = _FAMILIES.get(spec.arch.kind_name)
    return family[0](spec) if family else f"{spec.arch.kind_name} models have no transformers class"


def hf_format(spec: ModelSpec) -> str:
    """The zoo format of the transformers class that runs `spec`."""
    return _FAMILIES[spec.arch.kind_name][1](spec)


def to_hf_config(spec: ModelSpec, dtype: torch.dtype | None = None) -> dict[str, Any]:
    """config.json for `spec` (FormatError when transformers cannot express it)."""
    return _FAMILIES[spec.arch.kind_name][2](spec, dtype)


def spec_from_hf_config(cfg: dict[str, Any], name: str, tokenizer_file: str | None = None) -> ModelSpec:
    """A zoo spec from a transformers config.json (for folders without zoo.yaml)."""
    return _READERS.get(cfg.get("model_type"), llama.spec_from_llama_config)(cfg, name, tokenizer_file)


def generation_config(spec: ModelSpec) -> dict[str, Any]:
    tok = spec.tokenizer
    return {"bos_token_id": tok.bos_id if tok else None, "eos_token_id": tok.eos_id if tok else None}


__all__ = ["ARCHITECTURES", "MODEL_TYPES", "generation_config", "hf_format", "hf_unsupported", "spec_from_hf_config",
           "to_hf_config"]
