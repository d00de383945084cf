"""Feed-forward blocks: gated (SwiGLU, GeGLU) and the plain two-layer MLP."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Linear

from ..config import FFNConfig

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

    def __init__(self, dim: int, cfg: FFNConfig):
        super().__init__()
        self.act = ACTIVATIONS[cfg.activation]
        self.gate = Linear(dim, cfg.hidden_dim, bias=cfg.bias)
        self.up = Linear(dim, cfg.hidden_dim, bias=cfg.bias)
        self.down = Linear(cfg.hidden_dim, dim, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, u = self.gate(x), self.up(x)
        if self.glu_kernel is not None:
            h = self.glu_kernel(g, u)
            if h is not None:
                return self.down(h)
        return self.down(self.act(g) * u)


class MLP(nn.Module):
    """down(act(up x))."""

    def __init__(self, dim: int, cfg: FFNConfig):
        super().__init__()
        self.act = ACTIVATIONS[cfg.activation]
        self.up = Linear(dim, cfg.hidden_dim, bias=cfg.bias)
        self.down = Linear(cfg.hidden_dim, dim, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))


def build_ffn(cfg: FFNConfig, dim: int) -> nn.Module:
    if cfg.kind == "moe":
        from .moe import MoE

        return MoE(dim, cfg)  # type: ignore[arg-type]
    if cfg.kind == "gated":
        return GatedFFN(dim, cfg)
    if cfg.kind == "mlp":
        return MLP(dim, cfg)
    raise ValueError(f"unknown ffn kind {cfg.kind!r}")
