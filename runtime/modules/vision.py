"""The vision encoder (Pixtral): images of any size up to the RoPE grid, all of one call packed
into a single sequence of patches with block-diagonal attention (each image attends only to
itself), so a prompt's images cost one forward, not one per image.

2-D RoPE is the ordinary half-split rotation with a per-patch frequency vector: pairs
0..head_dim/4-1 turn by row·freqs[0::2], the rest by column·freqs[1::2] (transformers' layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..backends.base import Backend
from ..errors import ZooError
from .attention import Attention
from .build import Build
from .decoder import BlockConfig
from .rope import apply_rope


@dataclass(frozen=True)
class VisionEncoderConfig:
    """Patch Conv2d → ln_pre → bidirectional blocks with 2-D RoPE over a grid of at most
    max_grid x max_grid patches."""

    dim: int
    patch_size: int
    max_grid: int
    blocks: tuple[BlockConfig, ...]
    norm: Build  # ln_pre
    rope_theta: float = 10000.0
    channels: int = 3
    patch_bias: bool = False


class VisionInputError(ZooError, ValueError):
    """Images the vision encoder cannot read: wrong shape, a side not a multiple of the patch
    size, or larger than the model's grid."""


def rope_2d_tables(grids: Sequence[tuple[int, int]], head_dim: int, theta: float, device: torch.device | None,
                   dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (1, 1, sum(h*w), head_dim) for the patches of each (rows, cols) grid, row-major."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim))
    inv_rows, inv_cols = inv[0::2], inv[1::2]
    angles = []
    for h, w in grids:
        rows = torch.arange(h, device=device).repeat_interleave(w).float()
        cols = torch.arange(w, device=device).repeat(h).float()
        angles.append(torch.cat((rows[:, None] * inv_rows, cols[:, None] * inv_cols), dim=-1))
    f = torch.cat(angles)
    emb = torch.cat((f, f), dim=-1)[None, None]
    return emb.cos().to(dtype), emb.sin().to(dtype)


class VisionAttention(Attention):
    """Multi-head attention whose kernel is the backend's block-diagonal (bidirectional) one."""

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],  # type: ignore[override]
                seqlens: Sequence[int]) -> torch.Tensor:
        b, t, _ = x.shape
        c = self.cfg
        q, k, v = self.project(x)
        cos, sin = rope
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out = self.backend.block_diagonal_attention(q, k, v, seqlens, self.scale)
        return self.o(out.transpose(1, 2).reshape(b, t, c.n_heads * c.head_dim))


class VisionBlock(nn.Module):
    """h = x + attn(attn_norm(x)); out = h + ffn(ffn_norm(h)) — the decoder block's names."""

    def __init__(self, dim: int, cfg: BlockConfig, backend: Backend, layer: int):
        super().__init__()
        self.attn_norm = cfg.norm(dim)
        self.attn = VisionAttention(dim, cfg.attention, backend, layer)
        self.ffn_norm = cfg.norm(dim)
        self.ffn = cfg.ffn(dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], seqlens: Sequence[int]) -> torch.Tensor:
        h = x + self.attn(self.attn_norm(x), rope, seqlens)
        return h + self.ffn(self.ffn_norm(h))


class VisionEncoder(nn.Module):
    def __init__(self, cfg: VisionEncoderConfig, backend: Backend):
        super().__init__()
        self.cfg = cfg
        self.patch_conv = nn.Conv2d(cfg.channels, cfg.dim, cfg.patch_size, stride=cfg.patch_size, bias=cfg.patch_bias)
        self.ln_pre = cfg.norm(cfg.dim)
        self.blocks = nn.ModuleList(VisionBlock(cfg.dim, b, backend, i) for i, b in enumerate(cfg.blocks))

    def grid(self, i: int, image: torch.Tensor) -> tuple[int, int]:
        """(rows, cols) of patches of image i, or a VisionInputError saying what is wrong."""
        c = self.cfg
        if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != c.channels:
            shape = list(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise VisionInputError(f"image {i}: expected a [{c.channels}, H, W] tensor, got {shape}")
        if not image.is_floating_point():
            raise VisionInputError(f"image {i}: expected floating-point pixels (normalized), got {image.dtype}")
        if not bool(torch.isfinite(image).all()):
            raise VisionInputError(f"image {i}: pixels hold NaN or infinity")
        h, w = image.shape[1:]
        if h == 0 or w == 0 or h % c.patch_size or w % c.patch_size:
            raise VisionInputError(f"image {i}: height and width must be positive multiples of the patch size "
                                   f"{c.patch_size}, got {h}x{w}")
        rows, cols = h // c.patch_size, w // c.patch_size
        if rows > c.max_grid or cols > c.max_grid:
            side = c.max_grid * c.patch_size
            raise VisionInputError(f"image {i}: {h}x{w} is larger than the model's {side}x{side} "
                                   f"({c.max_grid}x{c.max_grid} patches); resize it first")
        return rows, cols

    def forward(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """(sum of patches, dim): each image's patches row-major, images in order, in one
        packed forward."""
        images = list(images)
        if not images:
            raise VisionInputError("no images given")
        grids = [self.grid(i, img) for i, img in enumerate(images)]
        conv = self.patch_conv.weight
        patches = [self.patch_conv(img.to(device=conv.device, dtype=conv.dtype)[None]).flatten(2)[0].T
                   for img in images]
        x = self.ln_pre(torch.cat(patches)[None])  # (1, T, dim)
        head_dim = self.cfg.blocks[0].attention.head_dim
        rope = rope_2d_tables(grids, head_dim, self.cfg.rope_theta, x.device, x.dtype)
        seqlens = [h * w for h, w in grids]
        for blk in self.blocks:
            x = blk(x, rope, seqlens)
        return x[0]
