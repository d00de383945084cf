"""Run n structurally identical pre-norm blocks on one input as a single batched block.

The heads of a multi-token model all read the same trunk output. Run one after another, a
decoding step pays n blocks' worth of small matmuls and kernel launches, which on CPU at batch
1 costs as much as the trunk itself and eats the speed-up self-speculative decoding is for. Here
the n heads' weights are stacked once (and re-stacked only when a parameter changes) and every
projection is one `bmm` over the head axis; attention runs with the heads folded into the batch
axis, reading a KV cache whose head layers were allocated as one contiguous group.

Used for inference only (no autograd graph): training keeps the per-head loop, whose memory
schedule the multi-token loss relies on. Results equal the loop's up to float rounding.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import torch
from torch import nn

from ..kv_cache import KVCache
from ..mask import AttentionLayout
from .ffn import GatedFFN
from .norm import RMSNorm
from .rope import apply_rope


def groupable(blocks: Sequence[nn.Module]) -> bool:
    """True when the blocks share one shape: RMSNorm, bias-free attention, bias-free gated FFN."""
    if len(blocks) < 2:
        return False
    from .decoder import (
        Block,  # a plain pre-norm block: the stacked step implements that layout only
    )

    first = blocks[0]
    for b in blocks:
        if type(b) is not Block:
            return False
        if not (isinstance(b.attn_norm, RMSNorm) and isinstance(b.ffn_norm, RMSNorm) and isinstance(b.ffn, GatedFFN)):
            return False
        if b.attn_norm.unit_offset or b.ffn_norm.unit_offset:
            return False
        if b.attn.extras() or b.attn.cfg != first.attn.cfg or b.ffn.act is not first.ffn.act or b.attn_norm.eps != first.attn_norm.eps:
            return False
        linears = (b.attn.q, b.attn.k, b.attn.v, b.attn.o, b.ffn.gate, b.ffn.up, b.ffn.down)
        if any(getattr(m, "bias", None) is not None for m in linears):
            return False
        if not all(isinstance(m._parameters.get("weight"), torch.Tensor) for m in linears):
            return False  # quantized projections (runtime/quant) run as their own modules
    return True


def _rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).type_as(x)


class HeadGroup:
    """Stacked weights of `blocks` (not a module: it owns no parameters, only derived tensors)."""

    def __init__(self, blocks: Sequence[nn.Module]):
        self.blocks = list(blocks)
        self._key: tuple | None = None
        self._w: dict[str, torch.Tensor] = {}

    def _params(self) -> list[torch.Tensor]:
        return [p for b in self.blocks for p in b.parameters()]

    def weights(self) -> dict[str, torch.Tensor]:
        """Stacked, transposed weights; rebuilt when any parameter was replaced or changed in place."""
        params = self._params()
        key = tuple((id(p), p._version, p.device, p.dtype) for p in params)
        if key != self._key:
            bs = self.blocks
            with torch.no_grad():
                self._w = {  # (n, out, in): the Linear layout, for the native kernel; bmm transposes a view
                    "attn_norm": torch.stack([b.attn_norm.weight for b in bs])[:, None],
                    "qkv": torch.stack([torch.cat([b.attn.q.weight, b.attn.k.weight, b.attn.v.weight]) for b in bs]),
                    "o": torch.stack([b.attn.o.weight for b in bs]),
                    "ffn_norm": torch.stack([b.ffn_norm.weight for b in bs])[:, None],
                    "gate_up": torch.stack([torch.cat([b.ffn.gate.weight, b.ffn.up.weight]) for b in bs]),
                    "down": torch.stack([b.ffn.down.weight for b in bs]),
                }
            self._key = key
        return self._w

    def _bmm(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x (n, R, in) @ w (n, out, in)^T: the native batched kernel where the backend binds one."""
        if self.blocks[0].attn.q.kernel is not None:
            from ..kernels import small_bmm

            y = small_bmm(x, w)
            if y is not None:
                return y
        return torch.bmm(x, w.transpose(1, 2))

    def forward(self, x: torch.Tensor, rope: Any, layout: AttentionLayout, cache: KVCache | None) -> torch.Tensor:
        """x (B, T, dim) → every block's output, (n, B, T, dim)."""
        w = self.weights()
        n = len(self.blocks)
        blk = self.blocks[0]
        c = blk.attn.cfg
        b, t, d = x.shape
        hq, hk, hd = c.n_heads, c.n_kv_heads, c.head_dim
        xs = x.reshape(1, b * t, d)
        a = _rms(xs, blk.attn_norm.eps) * w["attn_norm"]  # (n, BT, d)
        qkv = self._bmm(a, w["qkv"]).view(n, b, t, hq + 2 * hk, hd)
        q, k, v = qkv.split([hq, hk, hk], dim=3)
        q = q.permute(0, 1, 3, 2, 4).reshape(n * b, hq, t, hd)
        k = k.permute(0, 1, 3, 2, 4).reshape(n * b, hk, t, hd)
        v = v.permute(0, 1, 3, 2, 4).reshape(n * b, hk, t, hd)
        if rope is not None:
            cos, sin = rope
            cos, sin = cos.repeat(n, 1, 1, 1), sin.repeat(n, 1, 1, 1)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.write_group(blk.attn.layer, n, k, v, layout.start, layout.q_slots)
        if layout.key_valid is not None or layout.segments is not None:
            layout = dataclasses.replace(
                layout, _dense={},
                key_valid=None if layout.key_valid is None else layout.key_valid.repeat(n, 1),
                segments=None if layout.segments is None else layout.segments.repeat(n, 1))
        out = blk.attn.backend.attention(q, k, v, layout, c.sliding_window, blk.attn.scale)
        out = out.view(n, b, hq, t, hd).permute(0, 1, 3, 2, 4).reshape(n, b * t, hq * hd)
        h = xs + self._bmm(out, w["o"])
        g, u = self._bmm(_rms(h, blk.ffn_norm.eps) * w["ffn_norm"], w["gate_up"]).chunk(2, dim=-1)
        h = h + self._bmm(blk.ffn.act(g) * u, w["down"])
        return h.view(n, b, t, d)
