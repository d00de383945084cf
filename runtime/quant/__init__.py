"""Weight-only int8/int4 linear layers (QuantLinear) and their math (functional), and the swap
of a model's float linears for them."""

from __future__ import annotations

from torch import nn

from .functional import (
    dequantize_int4,
    dequantize_int8,
    pack_int4,
    quantize_int4,
    quantize_int8,
    unpack_int4,
)
from .linear import QuantLinear

__all__ = ["QuantLinear", "dequantize_int4", "dequantize_int8", "pack_int4", "quantize_int4", "quantize_int8",
           "replace_module", "unpack_int4"]


def replace_module(model: nn.Module, path: str, new: nn.Module) -> nn.Module:
    """Put `new` at dotted `path` of `model`; returns the module it replaces."""
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    old = parent._modules[name]
    parent._modules[name] = new
    return old  # type: ignore[return-value]
