"""torch.nn.functional.scaled_dot_product_attention: fused kernels on CPU and CUDA."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..mask import AttentionLayout
from .base import Backend


class SDPABackend(Backend):
    name = "sdpa"

    def attention_kernel(self, layout_hint: str = "causal") -> str:
        return "torch sdpa (is_causal fast path; boolean mask for padding, windows, packing)"

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: AttentionLayout,
                  window: int | None, scale: float) -> torch.Tensor:
        gqa = q.shape[1] != k.shape[1]
        if window is None or window >= layout.kv_len:
            if layout.plain_causal:
                return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
            if layout.decode_unmasked:
                return F.scaled_dot_product_attention(q, k, v, scale=scale, enable_gqa=gqa)
        mask = layout.dense(window, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)
