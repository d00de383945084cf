"""Multi-head attention with GQA/MQA, optional biases, RoPE and sliding windows; the kernel
comes from the bound backend, except with soft-capped scores (Gemma-2), which no fused kernel
computes: those run as explicit math on every backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..backends.base import Backend
from ..kv_cache import KVCache
from ..mask import AttentionLayout
from .build import Build
from .layers import Linear
from .rope import RopeConfig, apply_rope


@dataclass(frozen=True)
class AttentionConfig:
    n_heads: int
    n_kv_heads: int
    head_dim: int
    qkv_bias: bool = False
    o_bias: bool = False
    sliding_window: int | None = None
    rope: RopeConfig | None = field(default_factory=RopeConfig)
    qk_norm: Build | None = None  # a norm over each head's q and k (head_dim wide), before RoPE
    qk_norm_whole: bool = False  # the q/k norm spans the whole projection (OLMo-2), before the head split
    scale: float | None = None  # scores times this (None: head_dim ** -0.5)
    logit_softcap: float | None = None  # scores -> cap * tanh(scores / cap) before the mask (Gemma-2)


class Attention(nn.Module):
    rope_kernel: Any = None  # the bound backend's in-place RoPE (x, cos, sin) -> x or None, if any

    def __init__(self, dim: int, cfg: AttentionConfig, backend: Backend, layer: int):
        super().__init__()
        self.cfg = cfg
        self.backend = backend
        self.layer = layer
        self.scale = cfg.scale if cfg.scale is not None else cfg.head_dim ** -0.5
        self.q = Linear(dim, cfg.n_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.k = Linear(dim, cfg.n_kv_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.v = Linear(dim, cfg.n_kv_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.o = Linear(cfg.n_heads * cfg.head_dim, dim, bias=cfg.o_bias)
        whole = cfg.qk_norm_whole
        self.q_norm = cfg.qk_norm(cfg.n_heads * cfg.head_dim if whole else cfg.head_dim) if cfg.qk_norm else None
        self.k_norm = cfg.qk_norm(cfg.n_kv_heads * cfg.head_dim if whole else cfg.head_dim) if cfg.qk_norm else None

    def bind_kernels(self, backend: Backend, kernels: Any) -> None:
        self.backend = backend
        self.rope_kernel = kernels.elementwise.get("rope")

    def extras(self) -> list[str]:
        """What this attention computes beyond q/k/v/o projections and RoPE; fused kernels that
        implement only that plain form (the native decode step, grouped heads) decline blocks
        with any extra."""
        c = self.cfg
        partial = c.rope is not None and c.rope.width(c.head_dim) < c.head_dim
        return (["q/k norm"] * (self.q_norm is not None) + ["partial rotary"] * partial
                + ["scale override"] * (c.scale is not None) + ["score soft-capping"] * (c.logit_softcap is not None))

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x rotated by the tables, which cover its leading `width` dims (partial rotary: the
        rest pass through, as in transformers' GPT-NeoX, Phi and StableLM)."""
        width = cos.shape[-1]
        if width < x.shape[-1]:
            return torch.cat((self._rope(x[..., :width], cos, sin), x[..., width:]), dim=-1)
        if self.rope_kernel is not None:
            y = self.rope_kernel(x, cos, sin)
            if y is not None:
                return y
        return apply_rope(x, cos, sin)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (B, H, T, D), k and v (B, Hkv, T, D): the projections, before RoPE."""
        b, t, _ = x.shape
        c = self.cfg
        q, k = self.q(x), self.k(x)
        if self.q_norm is not None and c.qk_norm_whole:  # over all heads at once, before the split
            q, k = self.q_norm(q), self.k_norm(k)
        q = q.view(b, t, c.n_heads, c.head_dim)
        k = k.view(b, t, c.n_kv_heads, c.head_dim)
        if self.q_norm is not None and not c.qk_norm_whole:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = self.v(x).view(b, t, c.n_kv_heads, c.head_dim).transpose(1, 2)
        return q, k, v

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                layout: AttentionLayout, cache: KVCache | None) -> torch.Tensor:
        b, t, _ = x.shape
        c = self.cfg
        q, k, v = self.project(x)
        if rope is not None:
            cos, sin = rope
            q, k = self._rope(q, cos, sin), self._rope(k, cos, sin)
        if cache is not None:
            k, v = cache.write(self.layer, k, v, layout.start, layout.q_slots)
        if c.logit_softcap is not None:
            out = self._softcapped(q, k, v, layout, c.logit_softcap)
        else:
            out = self.backend.attention(q, k, v, layout, c.sliding_window, self.scale)
        return self.o(out.transpose(1, 2).reshape(b, t, c.n_heads * c.head_dim))

    def _softcapped(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: AttentionLayout,
                    cap: float) -> torch.Tensor:
        """Attention with scores cap * tanh(scores / cap) before the mask and the softmax, as
        transformers' Gemma-2; the same explicit math on every backend (fused kernels take no
        soft-cap), with the layout's dense mask (causal, window, padding, packing, static slots)."""
        rep = q.shape[1] // k.shape[1]
        if rep > 1:  # kv head j serves query heads j*rep ... j*rep+rep-1
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        scores = torch.tanh(scores / cap) * cap
        scores = scores.masked_fill(~layout.dense(self.cfg.sliding_window, q.device), float("-inf"))
        probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        return torch.matmul(probs, v)
