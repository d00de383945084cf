"""Normalization layers. Each takes `bind_kernels` from the backend it is lowered for."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """LLaMA's RMSNorm: normalize in float32, cast back, then scale. `kernel` is the bound
    backend's fused one (x, weight, eps) -> y or None, when it offers one.

    With `unit_offset` (Gemma) the scale is (1 + weight), applied in float32 before the cast
    back, as Gemma's reference does; the fused kernel and the native step do not do that."""

    kernel: Any = None

    def __init__(self, dim: int, eps: float, unit_offset: bool = False):
        super().__init__()
        self.eps = eps
        self.unit_offset = unit_offset
        self.weight = nn.Parameter(torch.empty(dim))

    def bind_kernels(self, backend: Any, kernels: Any) -> None:
        self.kernel = None if self.unit_offset else kernels.elementwise.get("rmsnorm")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel is not None:
            y = self.kernel(x, self.weight, self.eps)
            if y is not None:
                return y
        xf = x.float()
        out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.unit_offset:
            return (out * (1.0 + self.weight.float())).type_as(x)
        return out.type_as(x) * self.weight

    def reset_parameters(self) -> None:
        """The identity: weight 1, or 0 when the scale is (1 + weight)."""
        (nn.init.zeros_ if self.unit_offset else nn.init.ones_)(self.weight)


class LayerNorm(nn.Module):
    def __init__(self, dim: int, eps: float, bias: bool):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim))
        self.bias = nn.Parameter(torch.empty(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


class NonParametricLayerNorm(nn.Module):
    """LayerNorm without learnable parameters (OLMo): normalized in float32, cast back."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), (self.dim,), None, None, self.eps).type_as(x)
