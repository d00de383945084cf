"""Weight-only int8 / int4 linears on the native kernels (quant_gemm.c) as custom ops:
`zoo::quant_gemm` (decode-sized: integers turned into float32 in registers),
`zoo::quant_gemm_packed` (prefill on AVX2 CPUs: the packed GEMM of gemm.c, dequantizing 16 rows
at a time while packing) and `zoo::dequantize` (the float matrix, for other prefill GEMMs). As
in ops.py, eager callers skip the dispatcher (`ops.call`); the ops check what the C code relies on.

Prefill (more rows than a decode step) on AVX-512 CPUs dequantizes and runs a GEMM. Where the CPU has AVX512_BF16
the GEMM is bfloat16 (weights, activations and the result rounded to bf16; torch's CPU GEMM has
no float32 output for bf16 operands): it is ~5x torch's float32 one there (a 512 x 768 x 2048
product: 1.7 ms against 8.6 ms, AMD EPYC, 2 threads), and the rounding is smaller than the
weights' own quantization error (llama.cpp rounds activations to int8 blocks for the same
reason; bench/quant_accuracy.py measures the held-out loss either way). Elsewhere, or with
ZOO_QUANT_PREFILL=float32, it is float32."""

from __future__ import annotations

import os
from typing import Any

import torch

from . import library
from .ops import call, traced
from .weights import Quantized, describe, readable


def _quantized(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None, bits: int, group: int,
               k: int) -> Quantized:
    n = qweight.shape[0]
    w = Quantized(qweight, scales, zeros, bits, group if bits == 4 else 0, (n, k))
    why = readable(w) if bits in (4, 8) else f"bits={bits}"
    if why is not None:
        raise ValueError(f"zoo kernel: {why}")
    return w


def _gemm_args(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None, bits: int,
               group: int) -> tuple[int, int, Quantized, torch.Tensor, Any]:
    """(M, K, the weight, the output to fill, the library) of y = x @ W^T."""
    m, k = x.shape
    w = Quantized(qweight, scales, zeros, bits, group if bits == 4 else 0, (qweight.shape[0], k))
    return m, k, w, torch.empty(m, qweight.shape[0], dtype=torch.float32), library()


def quant_gemm_raw(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None,
                   bits: int, group: int) -> torch.Tensor:
    m, k, w, y, lib = _gemm_args(x, qweight, scales, zeros, bits, group)
    if lib is None or lib.zoo_wgemm(x.data_ptr(), describe(w), y.data_ptr(), m, y.shape[1], k) != 0:
        raise RuntimeError("zoo_wgemm failed")
    return y


@torch.library.custom_op("zoo::quant_gemm", mutates_args=())
def quant_gemm(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None, bits: int,
               group: int) -> torch.Tensor:
    """x (M, K) float32 @ W^T -> (M, N) float32, W int8 (qweight [N, K], scales [N]) or int4
    (qweight [N, K/2], scales and optional zeros [N, K/group]) as runtime/quant stores them."""
    _check_x(x, x.is_contiguous(), "contiguous")
    _quantized(qweight, scales, zeros, bits, group, x.shape[1])
    return quant_gemm_raw(x, qweight, scales, zeros, bits, group)


def _check_x(x: torch.Tensor, laid_out: bool, how: str) -> None:
    if not (x.dim() == 2 and x.dtype is torch.float32 and x.device.type == "cpu" and laid_out
            and x.shape[0] > 0 and x.shape[1] > 0):
        raise ValueError(f"zoo kernel: x (M, K) {how} float32 on the CPU, M, K > 0")


def _gemm_fake(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None, bits: int,
               group: int) -> torch.Tensor:
    return x.new_empty((x.shape[0], qweight.shape[0]), dtype=torch.float32)


quant_gemm.register_fake(_gemm_fake)


def quant_gemm_packed_raw(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None,
                          bits: int, group: int) -> torch.Tensor:
    m, k, w, y, lib = _gemm_args(x, qweight, scales, zeros, bits, group)
    rc = 1 if lib is None else lib.zoo_gemm_nt_q(x.data_ptr(), x.stride(0), describe(w), y.data_ptr(), y.shape[1], m,
                                                 y.shape[1], k)
    if rc != 0:  # its scratch memory could not be had
        y = torch.mm(x, dequantize_raw(qweight, scales, zeros, bits, group, k).t())
    return y


@torch.library.custom_op("zoo::quant_gemm_packed", mutates_args=())
def quant_gemm_packed(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None,
                      bits: int, group: int) -> torch.Tensor:
    """x (M, K) float32 @ W^T -> (M, N) float32 by the packed GEMM, W int8 / int4 (as quant_gemm)
    dequantized while packing: equal to a float32 GEMM on the dequantized matrix, without making it."""
    _check_x(x, x.dim() == 2 and x.stride(-1) == 1, "rows contiguous,")
    _quantized(qweight, scales, zeros, bits, group, x.shape[1])
    return quant_gemm_packed_raw(x, qweight, scales, zeros, bits, group)


quant_gemm_packed.register_fake(_gemm_fake)


def dequantize_raw(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None, bits: int, group: int,
                   k: int, bf16: bool = False) -> torch.Tensor:
    w = Quantized(qweight, scales, zeros, bits, group if bits == 4 else 0, (qweight.shape[0], k))
    out = torch.empty(qweight.shape[0], k, dtype=torch.bfloat16 if bf16 else torch.float32)
    lib = library()
    if lib is None or lib.zoo_dequantize(describe(w), out.data_ptr(), out.shape[0], k, int(bf16)) != 0:
        raise RuntimeError("zoo_dequantize failed")
    return out


@torch.library.custom_op("zoo::dequantize", mutates_args=())
def dequantize(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None, bits: int, group: int,
               k: int, bf16: bool = False) -> torch.Tensor:
    """The matrix [N, K] an int8 / int4 weight stands for, float32 or (bf16) bfloat16."""
    _quantized(qweight, scales, zeros, bits, group, k)
    return dequantize_raw(qweight, scales, zeros, bits, group, k, bf16)


@dequantize.register_fake
def _(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None, bits: int, group: int,
      k: int, bf16: bool = False) -> torch.Tensor:
    return qweight.new_empty((qweight.shape[0], k), dtype=torch.bfloat16 if bf16 else torch.float32)


_BF16: bool | None = None


def bf16_prefill() -> bool:
    """Whether prefill GEMMs of quantized weights run in bfloat16 here (the CPU has AVX512_BF16;
    ZOO_QUANT_PREFILL=float32 turns it off)."""
    global _BF16
    if _BF16 is None:  # read once, after the library has applied ZOO_KERNELS_ISA
        lib = library()
        _BF16 = bool(lib is not None and lib.zoo_cpu_bf16()) and os.environ.get("ZOO_QUANT_PREFILL") != "float32"
    return _BF16


def quant_linear(x: torch.Tensor, w: Quantized, bias: torch.Tensor | None, max_rows: int) -> torch.Tensor | None:
    """x @ W^T (+ bias) for float32 activations on the CPU with the native kernels: up to
    `max_rows` rows in registers (zoo::quant_gemm), more by a GEMM: on AVX2 CPUs the packed one,
    dequantizing while it packs (zoo::quant_gemm_packed); elsewhere bf16 or float32 on the
    dequantized matrix. None where they do not apply (other devices or dtypes, autograd, a layout
    they do not read, no kernel library here)."""
    from . import prefers_packed_gemm, ready

    n, k = w.shape
    if x.dtype is not torch.float32 or x.device.type != "cpu" or x.numel() == 0 or x.shape[-1] != k:
        return None
    if torch.is_grad_enabled() and x.requires_grad or readable(w) is not None or not ready():
        return None
    x2 = x.reshape(-1, k)
    if x2.shape[0] <= max_rows:
        y = call(quant_gemm, quant_gemm_raw, x2.contiguous(), w.qweight, w.scales, w.zeros, w.bits, w.group)
    else:
        dq = dequantize if traced(x) else dequantize_raw
        if bf16_prefill():
            y = torch.mm(x2.to(torch.bfloat16), dq(w.qweight, w.scales, w.zeros, w.bits, w.group, k, True).t()).float()
        elif prefers_packed_gemm():
            x2 = x2 if x2.stride(-1) == 1 else x2.contiguous()
            y = call(quant_gemm_packed, quant_gemm_packed_raw, x2, w.qweight, w.scales, w.zeros, w.bits, w.group)
        else:
            y = torch.mm(x2, dq(w.qweight, w.scales, w.zeros, w.bits, w.group, k).t())
    if bias is not None:
        y += bias
    return y.view(*x.shape[:-1], n)
