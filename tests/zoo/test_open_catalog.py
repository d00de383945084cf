"""The open-model catalog (Llama 3, Qwen, Gemma, Phi-3, StarCoder2, OLMo, StableLM, Pythia, ...):
every spec whose family is a transformers family is checked against the transformers class
itself. The config.json zoo writes for the spec (the family file's mapping) builds the class on
the meta device; its parameter count must equal the spec's `published.params` and zoo's own
accounting, and the spec must be expressed by its own family (not by another that happens to
fit)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import zoo
from zoo.formats.hf import to_hf_config
from zoo.formats.hf.family import families, family_for

#: model_type -> the transformers class name that runs it
CLASSES = {t: f.architecture for t, f in families().items()}


def open_models() -> list[str]:
    """Catalog models of a transformers family (the Llama 1/2, Code Llama and Mixtral entries
    have their own table in test_catalog.py)."""
    out = []
    for name in zoo.list():
        s = zoo.spec(name)
        if s.family in CLASSES and s.weights is not None and s.weights.format.startswith("hf-"):
            out.append(name)
    return out


OPEN = open_models()


def transformers_count(cfg: dict[str, Any]) -> int:
    import transformers

    config = transformers.AutoConfig.for_model(**cfg)
    with torch.device("meta"):
        model = getattr(transformers, cfg["architectures"][0])(config)
    return sum(p.numel() for p in model.parameters())


def test_the_open_catalog_is_there() -> None:
    assert len(OPEN) >= 4


@pytest.mark.parametrize("name", OPEN)
def test_parameter_count_is_the_transformers_class(name: str) -> None:
    s = zoo.spec(name)
    assert s.published is not None and s.published.params, f"{name}: no published.params"
    fam, why = family_for(s)
    assert fam is not None and fam.model_type == s.family, why
    cfg = to_hf_config(s)
    assert transformers_count(cfg) == s.published.params == zoo.compile(s).accounting.params
