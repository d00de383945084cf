"""xformers' memory_efficient_attention (CUDA only), with its structured attention biases:
causal for plain batches, bottom-right causal for decoding against a cache, block-diagonal
causal for packed variable-length sequences, a dense bias only where padding forces one."""

from __future__ import annotations

from typing import Sequence

import torch

from ..mask import AttentionLayout
from .base import Availability, Backend


def _seqlens(segments: torch.Tensor) -> list[int]:
    """Run lengths of every row's segment ids, rows concatenated (xformers packs batch into one row)."""
    out: list[int] = []
    for row in segments.tolist():
        run = 1
        for a, b in zip(row, row[1:]):
            if a == b:
                run += 1
            else:
                out.append(run)
                run = 1
        out.append(run)
    return out


class XFormersBackend(Backend):
    name = "xformers"

    @classmethod
    def availability(cls, device: torch.device) -> Availability:
        if device.type != "cuda":
            return Availability(False, f"needs a CUDA device, have {device.type}")
        try:
            import xformers.ops  # noqa: F401
        except Exception as e:  # ImportError, or a broken build
            return Availability(False, f"xformers is not importable ({type(e).__name__}: {e}); pip install xformers==0.0.35")
        return Availability(True, "memory_efficient_attention on CUDA")

    def attention_kernel(self, layout_hint: str = "causal") -> str:
        return "xformers memory_efficient_attention (causal / bottom-right / block-diagonal biases)"

    def _bias(self, layout: AttentionLayout, window: int | None, q: torch.Tensor, shape: tuple[int, ...]):  # type: ignore[no-untyped-def]
        from xformers.ops import fmha

        ab = fmha.attn_bias
        if layout.segments is not None and layout.key_valid is None and not layout.static:
            bias = ab.BlockDiagonalCausalMask.from_seqlens(_seqlens(layout.segments))
            return bias.make_local_attention(window) if window else bias
        if layout.key_valid is None and not layout.static:
            if layout.start == 0:
                return ab.LowerTriangularFromBottomRightLocalAttentionMask(window) if window else ab.LowerTriangularMask()
            # queries are the last q_len of kv_len keys
            return ab.LowerTriangularFromBottomRightLocalAttentionMask(window) if window else ab.LowerTriangularFromBottomRightMask()
        # padding (or a static cache): a dense additive bias; xformers wants the key dim 8-aligned
        allowed = layout.dense(window, q.device)  # (B|1, 1, T, S)
        s = allowed.shape[-1]
        padded = torch.full((*shape[:-1], (s + 7) // 8 * 8), float("-inf"), dtype=q.dtype, device=q.device)
        bias = padded[..., :s]
        view = allowed.reshape(allowed.shape[0], *([1] * (len(shape) - 3)), *allowed.shape[-2:])
        bias.masked_fill_(view.expand(shape), 0.0)
        return bias

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: AttentionLayout,
                  window: int | None, scale: float) -> torch.Tensor:
        from xformers.ops import memory_efficient_attention

        b, h, t, d = q.shape
        hkv, s = k.shape[1], k.shape[2]
        qx, kx, vx = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, M, H, D)
        if hkv != h:  # GQA as xformers' 5-D (B, M, G, H/G, D): kv head j serves query heads j*r…
            r = h // hkv
            qx = qx.reshape(b, t, hkv, r, d)
            kx = kx[:, :, :, None].expand(b, s, hkv, r, d)
            vx = vx[:, :, :, None].expand(b, s, hkv, r, d)
            bias_shape: tuple[int, ...] = (b, hkv, r, t, s)
        else:
            bias_shape = (b, h, t, s)
        packed = layout.segments is not None and layout.key_valid is None and not layout.static
        if packed and b > 1:  # block-diagonal masks take one long row
            qx, kx, vx = (x.reshape(1, -1, *x.shape[2:]) for x in (qx, kx, vx))
        out = memory_efficient_attention(qx, kx, vx, attn_bias=self._bias(layout, window, q, bias_shape), scale=scale)
        return out.reshape(b, t, h, d).transpose(1, 2)

    def block_diagonal_kernel(self) -> str:
        return "xformers memory_efficient_attention (BlockDiagonalMask over the packed images)"

    def block_diagonal_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seqlens: Sequence[int],
                                 scale: float) -> torch.Tensor:
        from xformers.ops import fmha, memory_efficient_attention

        rep = q.shape[1] // k.shape[1]
        if rep > 1:
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        bias = fmha.attn_bias.BlockDiagonalMask.from_seqlens([int(n) for n in seqlens])
        out = memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_bias=bias,
                                         scale=scale)  # (1, T, H, D)
        return out.transpose(1, 2)
