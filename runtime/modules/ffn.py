"""Feed-forward blocks: gated (SwiGLU, GeGLU) and the plain two-layer MLP."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Linear

ACTIVATIONS = {
    "silu": F.silu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


class GatedFFN(nn.Module):
    """down(act(gate x) * up x) — LLaMA's w2(silu(w1 x) * w3 x). `glu_kernel` is the bound
    backend's fused silu(gate) * up, when it offers one (SiLU only)."""

    glu_kernel: Any = None

    def __init__(self, dim: int, hidden_dim: int, activation: str = "silu", bias: bool = False):
        super().__init__()
        self.act = ACTIVATIONS[activation]
        self.gate = Linear(dim, hidden_dim, bias=bias)
        self.up = Linear(dim, hidden_dim, bias=bias)
        self.down = Linear(hidden_dim, dim, bias=bias)

    def bind_kernels(self, backend: Any, kernels: Any) -> None:
        self.glu_kernel = kernels.elementwise.get("silu_mul") if self.act is F.silu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, u = self.gate(x), self.up(x)
        if self.glu_kernel is not None:
            h = self.glu_kernel(g, u)
            if h is not None:
                return self.down(h)
        return self.down(self.act(g) * u)


class MLP(nn.Module):
    """down(act(up x))."""

    def __init__(self, dim: int, hidden_dim: int, activation: str = "gelu", bias: bool = True):
        super().__init__()
        self.act = ACTIVATIONS[activation]
        self.up = Linear(dim, hidden_dim, bias=bias)
        self.down = Linear(hidden_dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))
