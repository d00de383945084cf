"""torch.nn.functional.scaled_dot_product_attention: fused kernels on CPU and CUDA."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..mask import AttentionLayout, block_diagonal_mask
from .base import Backend


class SDPABackend(Backend):
    name = "sdpa"

    def __init__(self) -> None:
        from ..kernels import causal_attention

        self._causal, _ = self._native(causal_attention, "", "")

    def attention_kernel(self, layout_hint: str = "causal") -> str:
        native = ("zoo causal attention on the packed GEMM (CPU, float32 or bf16, AVX2, >= 64 queries, no padding "
                  "or window); " if self._causal is not None else "")
        return native + "torch sdpa (is_causal fast path; boolean mask for padding, windows, packing)"

    @staticmethod
    def _native(kernel: Any, name: str, fallback: str) -> tuple[Any, str]:
        """`kernel` where zoo's native kernels can run here, else None and why not."""
        from ..kernels import precheck, small_gemm_status

        ok, why = precheck()
        if ok:  # built (once per machine, then loaded) now rather than inside a torch.compile trace
            small_gemm_status()
        return (kernel, name) if ok else (None, f"{fallback} (zoo native kernels unavailable: {why})")

    def linear_kernel(self) -> tuple[Any, str]:
        from ..kernels import cpu_linear

        return self._native(cpu_linear, "zoo small-GEMM (native AVX2, CPU, float32 or bf16 weights, 1-32 rows: decode "
                            "steps); zoo packed GEMM for more rows on AVX2 CPUs; torch linear otherwise", "torch linear")

    def elementwise_kernels(self) -> tuple[dict[str, Any], str]:
        from .. import kernels

        fns, name = self._native({"rmsnorm": kernels.rmsnorm, "silu_mul": kernels.silu_mul, "rope": kernels.rope},
                                 "zoo fused RMSNorm, SiLU*up, RoPE in place (CPU, float32, one pass each); torch ops "
                                 "otherwise", "torch ops")
        return fns or {}, name

    def block_kernel(self) -> tuple[Any, str]:
        from ..kernels.block_step import decoder_stack_step

        return self._native(decoder_stack_step, "zoo native step (CPU, float32 or bf16, <= 32 rows over an unpadded "
                            "cache: all LLaMA-style blocks in one call); modules op by op otherwise", "modules op by op")

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: AttentionLayout,
                  window: int | None, scale: float) -> torch.Tensor:
        gqa = q.shape[1] != k.shape[1]
        if window is None or window >= layout.kv_len:
            if self._causal is not None and layout.key_valid is None and layout.segments is None and not layout.static:
                out = self._causal(q, k, v, scale)  # queries are the last q_len of the keys
                if out is not None:
                    return out
            if layout.plain_causal:
                return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
            if layout.decode_unmasked:
                return F.scaled_dot_product_attention(q, k, v, scale=scale, enable_gqa=gqa)
        mask = layout.dense(window, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)

    def block_diagonal_kernel(self) -> str:
        return "torch sdpa with a dense block-diagonal boolean mask"

    def block_diagonal_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seqlens: Sequence[int],
                                 scale: float) -> torch.Tensor:
        gqa = q.shape[1] != k.shape[1]
        if len(seqlens) == 1:  # one block: no mask at all
            return F.scaled_dot_product_attention(q, k, v, scale=scale, enable_gqa=gqa)
        mask = block_diagonal_mask(seqlens, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)
