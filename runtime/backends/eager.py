"""The plain-PyTorch reference: every other backend is tested against this one."""

from __future__ import annotations

import torch

from ..mask import AttentionLayout
from .base import Backend


class EagerBackend(Backend):
    name = "eager"

    def attention_kernel(self, layout_hint: str = "causal") -> str:
        return "matmul + softmax (float32) + matmul"

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: AttentionLayout,
                  window: int | None, scale: float) -> torch.Tensor:
        rep = q.shape[1] // k.shape[1]
        if rep > 1:  # kv head j serves query heads j*rep ... j*rep+rep-1
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        scores = torch.matmul(q, k.transpose(-1, -2)) * scale
        mask = layout.dense(window, q.device)
        scores = scores.masked_fill(~mask, float("-inf"))
        probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        return torch.matmul(probs, v)

    # block_diagonal_attention: Backend's default (the same math, dense block-diagonal mask)
