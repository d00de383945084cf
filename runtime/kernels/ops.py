"""The native kernels as `torch.library` custom ops (`torch.ops.zoo.*`), so that `torch.compile`
and `torch.export` see one opaque op with a known output shape where eager code makes a ctypes
call (Dynamo cannot trace a ctypes call, and a fake tensor has no data pointer).

Each op takes plain tensors and numbers, checks what the C code relies on (raising ValueError
otherwise, never reading out of bounds), and has a fake (meta) implementation for tracing. The
callers in `__init__.py` and `block_step.py` decide whether a kernel applies (dtype, device, rows,
autograd) and call `call(op, raw, ...)`: in plain eager code the unchecked implementation
(`*_raw`, whose inputs the caller has checked) directly, under compile, export or a dispatch mode
the registered op (the dispatcher costs ~7 us a call, ~70 us for the step's tensor lists, which a
small model's decode step would notice).

Ops that write into their inputs declare it (`mutates_args`): `silu_mul` (into gate), `rope` (into
x) and `stack_step` (the KV cache layers).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from . import library
from .step_call import run_step

_STORED = (torch.float32, torch.bfloat16)


def traced(x: torch.Tensor) -> bool:
    """Whether `x` is seen by a tracer (compile, export, fake or functional tensors, a dispatch mode
    such as a FLOP counter) rather than in plain eager code."""
    return torch.compiler.is_compiling() or type(x) is not torch.Tensor or bool(torch._C._len_torch_dispatch_stack())


def call(op: Callable[..., Any], raw: Callable[..., Any], x: torch.Tensor, *args: Any) -> Any:
    """`raw(x, *args)` in plain eager code; the registered `op` where traced."""
    return op(x, *args) if traced(x) else raw(x, *args)


def _lib() -> ctypes.CDLL:
    lib = library()
    if lib is None:
        raise RuntimeError("zoo native kernels are not available on this machine")
    return lib


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"zoo kernel: {what}")


def _cpu(*xs: torch.Tensor) -> bool:
    return all(x.device.type == "cpu" for x in xs)


# ---------------------------------------------------------------- linear layers
def small_gemm_impl(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    _need(x.dim() == 2 and weight.dim() == 2 and x.shape[1] == weight.shape[1] and x.shape[1] > 0, "x (M, K), w (N, K)")
    _need(x.dtype is torch.float32 and weight.dtype in _STORED and _cpu(x, weight), "float32 x, float32/bf16 w, CPU")
    _need(x.is_contiguous() and weight.is_contiguous(), "contiguous x and w")
    return small_gemm_raw(x, weight)


def small_gemm_raw(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    m, n, k = x.shape[0], weight.shape[0], x.shape[1]
    y = torch.empty(m, n, dtype=torch.float32)
    if m and n:
        lib = _lib()
        fn = lib.zoo_small_gemm if weight.dtype is torch.float32 else lib.zoo_small_gemm_bf16
        if fn(x.data_ptr(), weight.data_ptr(), y.data_ptr(), m, n, k) != 0:
            raise RuntimeError("zoo_small_gemm failed")
    return y


@torch.library.custom_op("zoo::small_gemm", mutates_args=())
def small_gemm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x (M, K) float32 @ weight (N, K)^T (float32 or bfloat16, read as stored) -> (M, N) float32:
    the decode-step linear (small_gemm.c)."""
    return small_gemm_impl(x, weight)


@small_gemm.register_fake
def _(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return x.new_empty((x.shape[0], weight.shape[0]), dtype=torch.float32)


def small_bgemm_impl(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    _need(x.dim() == 3 and weight.dim() == 3 and x.shape[0] == weight.shape[0] and x.shape[2] == weight.shape[2],
          "x (B, M, K), w (B, N, K)")
    _need(x.dtype is torch.float32 and weight.dtype is torch.float32 and _cpu(x, weight), "float32 CPU tensors")
    _need(x.is_contiguous() and weight.is_contiguous(), "contiguous x and w")
    return small_bgemm_raw(x, weight)


def small_bgemm_raw(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    b, m, k = x.shape
    y = torch.empty(b, m, weight.shape[1], dtype=torch.float32)
    if y.numel() and k:
        if _lib().zoo_small_bgemm(x.data_ptr(), weight.data_ptr(), y.data_ptr(), b, m, weight.shape[1], k) != 0:
            raise RuntimeError("zoo_small_bgemm failed")
    elif y.numel():
        y.zero_()
    return y


@torch.library.custom_op("zoo::small_bgemm", mutates_args=())
def small_bgemm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x (B, M, K) @ weight (B, N, K)^T -> (B, M, N), float32: a multi-token model's grouped heads."""
    return small_bgemm_impl(x, weight)


@small_bgemm.register_fake
def _(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return x.new_empty((x.shape[0], x.shape[1], weight.shape[1]), dtype=torch.float32)


def gemm_nt_impl(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    _need(x.dim() == 2 and weight.dim() == 2 and x.shape[1] == weight.shape[1] and x.shape[1] > 0, "x (M, K), w (N, K)")
    _need(x.dtype is torch.float32 and weight.dtype in _STORED and _cpu(x, weight), "float32 x, float32/bf16 w, CPU")
    _need(x.stride(1) == 1 and weight.is_contiguous(), "x rows contiguous, w contiguous")
    return gemm_nt_raw(x, weight)


def gemm_nt_raw(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    m, n, k = x.shape[0], weight.shape[0], x.shape[1]
    y = torch.empty(m, n, dtype=torch.float32)
    if m and n and _lib().zoo_gemm_nt(x.data_ptr(), x.stride(0), weight.data_ptr(), int(weight.dtype is torch.bfloat16),
                                      y.data_ptr(), n, m, n, k) != 0:
        y = F.linear(x, weight.float())  # its scratch memory could not be had
    return y


@torch.library.custom_op("zoo::gemm_nt", mutates_args=())
def gemm_nt(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x (M, K) float32 (rows contiguous) @ weight (N, K)^T (float32, or bfloat16 widened while
    packing) -> (M, N) float32: the packed GEMM of prefill-sized linears (gemm.c)."""
    return gemm_nt_impl(x, weight)


@gemm_nt.register_fake
def _(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return x.new_empty((x.shape[0], weight.shape[0]), dtype=torch.float32)


# ---------------------------------------------------------------- attention, element-wise
def causal_attention_impl(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    _need(q.dim() == 4 and k.dim() == 4 and v.shape == k.shape, "q (B, H, T, D), k and v (B, Hkv, S, D)")
    b, h, t, d = q.shape
    hkv, s = k.shape[1], k.shape[2]
    _need(k.shape[0] == b and k.shape[3] == d and s >= t and hkv > 0 and h % hkv == 0, "matching shapes, S >= T")
    _need(all(x.dtype is torch.float32 and x.stride(-1) == 1 for x in (q, k, v)) and _cpu(q, k, v),
          "float32 CPU tensors, last dim contiguous")
    return causal_attention_raw(q, k, v, scale)


def causal_attention_raw(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    b, h, t, d = q.shape
    hkv, s = k.shape[1], k.shape[2]
    out = torch.empty(b, t, h, d)
    o = out.transpose(1, 2)
    if o.numel() == 0:
        return o
    strides = [(ctypes.c_int64 * 3)(*x.stride()[:3]) for x in (q, k, v, o)]
    if _lib().zoo_causal_attention(q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), b, h, hkv, t, s, d,
                                   *strides, scale) != 0:  # no scratch memory: the same math with torch
        mask = torch.ones(t, s, dtype=torch.bool).tril(s - t)
        o.copy_(F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=h != hkv))
    return o


@torch.library.custom_op("zoo::causal_attention", mutates_args=())
def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """Causal softmax attention, float32: q (B, H, T, D) the last T of the S positions of k, v
    (B, Hkv, S, D) -> (B, H, T, D), a transposed view of a (B, T, H, D) tensor (gemm.c)."""
    return causal_attention_impl(q, k, v, scale)


@causal_attention.register_fake
def _(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    b, h, t, d = q.shape
    return q.new_empty((b, t, h, d)).transpose(1, 2)


def rmsnorm_impl(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    _need(x.dim() >= 1 and weight.shape == x.shape[-1:] and weight.is_contiguous(), "weight (D,) for x (..., D)")
    _need(x.dtype is torch.float32 and weight.dtype is torch.float32 and _cpu(x, weight), "float32 CPU tensors")
    return rmsnorm_raw(x, weight, eps)


def rmsnorm_raw(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    d = x.shape[-1]
    x2 = x.reshape(-1, d)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    out = torch.empty(x.shape, dtype=torch.float32)
    if out.numel():
        _lib().zoo_rmsnorm(x2.data_ptr(), x2.stride(0), weight.data_ptr(), out.data_ptr(), x2.shape[0], d, eps)
    return out


@torch.library.custom_op("zoo::rmsnorm", mutates_args=())
def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LLaMA's RMSNorm in one pass, float32: x * rsqrt(mean(x^2, -1) + eps) * weight (eltwise.c)."""
    return rmsnorm_impl(x, weight, eps)


@rmsnorm.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x.new_empty(x.shape, dtype=torch.float32)


def silu_mul_impl(gate: torch.Tensor, up: torch.Tensor) -> None:
    _need(gate.shape == up.shape and gate.is_contiguous() and up.is_contiguous(), "contiguous gate and up, one shape")
    _need(gate.dtype is torch.float32 and up.dtype is torch.float32 and _cpu(gate, up), "float32 CPU tensors")
    silu_mul_raw(gate, up)


def silu_mul_raw(gate: torch.Tensor, up: torch.Tensor) -> None:
    if gate.numel():
        _lib().zoo_silu_mul(gate.data_ptr(), up.data_ptr(), gate.numel())


@torch.library.custom_op("zoo::silu_mul", mutates_args=("gate",))
def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> None:
    """gate <- silu(gate) * up, in place, float32 (eltwise.c)."""
    silu_mul_impl(gate, up)


@silu_mul.register_fake
def _(gate: torch.Tensor, up: torch.Tensor) -> None:
    return None


def rope_impl(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> None:
    _need(x.dim() == 4 and cos.dim() == 4 and x.stride(-1) == 1 and x.shape[-1] % 2 == 0, "x (B, H, T, D), D even")
    b, _, t, d = x.shape
    _need(cos.shape == sin.shape and cos.shape[1:] == (1, t, d) and cos.shape[0] in (1, b), "tables (B | 1, 1, T, D)")
    _need(cos.is_contiguous() and sin.is_contiguous(), "contiguous tables")
    _need(all(y.dtype is torch.float32 for y in (x, cos, sin)) and _cpu(x, cos, sin), "float32 CPU tensors")
    rope_raw(x, cos, sin)


def rope_raw(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> None:
    b, h, t, d = x.shape
    if x.numel():
        strides = (ctypes.c_int64 * 3)(*x.stride()[:3])
        _lib().zoo_rope(x.data_ptr(), cos.data_ptr(), sin.data_ptr(), b, h, t, d, strides, cos.shape[0])


@torch.library.custom_op("zoo::rope", mutates_args=("x",))
def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> None:
    """Half-split RoPE in place on x (B, H, T, D) with tables (B | 1, 1, T, D), float32 (eltwise.c)."""
    rope_impl(x, cos, sin)


@rope.register_fake
def _(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> None:
    return None


# ---------------------------------------------------------------- the decode step
def stack_step_impl(x: torch.Tensor, weights: list[torch.Tensor], k_cache: list[torch.Tensor],
                    v_cache: list[torch.Tensor], cos: torch.Tensor | None, sin: torch.Tensor | None,
                    config: list[int], scales: list[float], start: int, parallel: int) -> torch.Tensor:
    return run_step(x, weights, k_cache, v_cache, cos, sin, config, scales, start, parallel)


@torch.library.custom_op("zoo::stack_step", mutates_args=("k_cache", "v_cache"))
def stack_step(x: torch.Tensor, weights: list[torch.Tensor], k_cache: list[torch.Tensor], v_cache: list[torch.Tensor],
               cos: torch.Tensor | None, sin: torch.Tensor | None, config: list[int], scales: list[float],
               start: int, parallel: int) -> torch.Tensor:
    """A decode step through L LLaMA-style blocks in one call (block_step.c): x (B, T, D); weights
    9 per block (attn_norm, ffn_norm, q, k, v, o, gate, up, down; float32 or bfloat16); the
    blocks' cache layers (B, Hkv, max_len, hd), written at slots start .. start + T; cos, sin
    (B, T, hd) float32 or None; config (window, rope) and scales (eps, attention scale) per block.
    Returns the float32 residual stream (B, T, D), or (parallel, B, T, D) with the last
    `parallel` blocks side by side."""
    return stack_step_impl(x, weights, k_cache, v_cache, cos, sin, config, scales, start, parallel)


@stack_step.register_fake
def _(x: torch.Tensor, weights: list[torch.Tensor], k_cache: list[torch.Tensor], v_cache: list[torch.Tensor],
      cos: torch.Tensor | None, sin: torch.Tensor | None, config: list[int], scales: list[float], start: int,
      parallel: int) -> torch.Tensor:
    shape = (parallel, *x.shape) if parallel else tuple(x.shape)
    return x.new_empty(shape, dtype=torch.float32)


OPS = {"small_gemm": small_gemm, "small_bgemm": small_bgemm, "gemm_nt": gemm_nt, "causal_attention": causal_attention,
       "rmsnorm": rmsnorm, "silu_mul": silu_mul, "rope": rope, "stack_step": stack_step}
