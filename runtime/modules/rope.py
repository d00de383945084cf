"""Rotary position embedding, half-split layout (pairs i and i + d/2).

The zoo's canonical layout is the half-split one transformers uses; Meta's interleaved layout
is reached by permuting the q/k rows in the `meta` format, so the kernel stays one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RopeConfig:
    theta: float = 10000.0
    scaling_factor: float | None = None  # linear position interpolation


def inv_frequencies(head_dim: int, cfg: RopeConfig, device: torch.device | None = None) -> torch.Tensor:
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim
    inv = 1.0 / (cfg.theta ** exponent)
    if cfg.scaling_factor:
        inv = inv / cfg.scaling_factor
    return inv


_INV: dict[tuple, torch.Tensor] = {}  # (head_dim, theta, scaling) -> inverse frequencies, on the CPU


def rope_tables(positions: torch.Tensor, head_dim: int, cfg: RopeConfig, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, (B, 1, T, head_dim), computed in float32 for positions (B, T). The inverse
    frequencies (all that depends on the config: theta and the scaling factor) are computed once
    per head size, on the CPU: a decode step builds its tables every step."""
    key = (head_dim, cfg.theta, cfg.scaling_factor)
    inv = _INV.get(key)
    if inv is None:
        inv = _INV[key] = inv_frequencies(head_dim, cfg)
    inv = inv.to(positions.device)  # a copy per call elsewhere: the same graph input every step on XLA
    freqs = positions[..., None].float() * inv
    emb = torch.cat((freqs, freqs), dim=-1)[:, None]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + rotate_half(x) * sin
