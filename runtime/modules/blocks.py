"""Block layouts beside the plain pre-norm `Block` (decoder.py): where the norms sit and how the
two sublayers meet the residual stream. Same attention and FFN modules, same cache; the native
decode step and grouped heads take only the plain pre-norm block, so these run op by op.

- SandwichBlock (Gemma-2/3): a norm before and after each sublayer,
  h = x + post_attn_norm(attn(attn_norm(x))); out = h + post_ffn_norm(ffn(ffn_norm(h))).
- PostNormBlock (OLMo-2): norms on the sublayers' outputs only,
  h = x + post_attn_norm(attn(x)); out = h + post_ffn_norm(ffn(h)).
- ParallelBlock (GPT-NeoX/Pythia; with one shared norm Phi-2, Falcon): both sublayers read the
  block's input, out = x + attn(attn_norm(x)) + ffn(ffn_norm(x)).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..backends.base import Backend
from ..kv_cache import KVCache
from ..mask import AttentionLayout
from .attention import Attention


class SandwichBlock(nn.Module):
    def __init__(self, dim: int, cfg: Any, backend: Backend, layer: int):
        super().__init__()
        self.attn_norm = cfg.norm(dim)
        self.post_attn_norm = cfg.norm(dim)
        self.ffn_norm = cfg.norm(dim)
        self.post_ffn_norm = cfg.norm(dim)
        self.attn = Attention(dim, cfg.attention, backend, layer)
        self.ffn = cfg.ffn(dim)

    def forward(self, x: torch.Tensor, rope: Any, layout: AttentionLayout, cache: KVCache | None) -> torch.Tensor:
        h = x + self.post_attn_norm(self.attn(self.attn_norm(x), rope, layout, cache))
        return h + self.post_ffn_norm(self.ffn(self.ffn_norm(h)))


class PostNormBlock(nn.Module):
    def __init__(self, dim: int, cfg: Any, backend: Backend, layer: int):
        super().__init__()
        self.post_attn_norm = cfg.norm(dim)
        self.post_ffn_norm = cfg.norm(dim)
        self.attn = Attention(dim, cfg.attention, backend, layer)
        self.ffn = cfg.ffn(dim)

    def forward(self, x: torch.Tensor, rope: Any, layout: AttentionLayout, cache: KVCache | None) -> torch.Tensor:
        h = x + self.post_attn_norm(self.attn(x, rope, layout, cache))
        return h + self.post_ffn_norm(self.ffn(h))


class ParallelBlock(nn.Module):
    def __init__(self, dim: int, cfg: Any, backend: Backend, layer: int, shared_norm: bool = False):
        super().__init__()
        self.attn_norm = cfg.norm(dim)
        self.ffn_norm = None if shared_norm else cfg.norm(dim)
        self.attn = Attention(dim, cfg.attention, backend, layer)
        self.ffn = cfg.ffn(dim)

    def forward(self, x: torch.Tensor, rope: Any, layout: AttentionLayout, cache: KVCache | None) -> torch.Tensor:
        h = self.attn_norm(x)
        attn = self.attn(h, rope, layout, cache)
        ffn = self.ffn(h if self.ffn_norm is None else self.ffn_norm(x))
        return ffn + attn + x
