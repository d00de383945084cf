"""The ctypes side of the native decode step (block_step.c): the per-block argument structure,
built from the tensors a call passes and kept while the same tensors (address, shape, dtype) come
back, and the call itself. `zoo::stack_step` (ops.py) runs `run_step`; `block_step.py` decides
when a stack of modules can take it.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from collections.abc import Sequence

import torch

from . import MAX_ROWS, library
from .weights import Quantized, Weight, describe, readable

_STORED = (torch.float32, torch.bfloat16)  # parameters and cache: read as they are, summed in float32
PER_BLOCK = 9  # attn_norm, ffn_norm, q, k, v, o, gate, up, down
PROJECTIONS = ("wq", "wk", "wv", "wo", "wg", "wu", "wd")


class _Block(ctypes.Structure):
    _fields_ = ([(n, ctypes.c_int64) for n in ("D", "H", "Hkv", "hd", "F", "window", "max_len", "rope", "wbf16",
                                               "kvbf16")]
                + [("eps", ctypes.c_float), ("scale", ctypes.c_float)]
                + [(n, ctypes.c_void_p) for n in ("attn_norm", "ffn_norm", "kc", "vc")]
                + [(n, Weight) for n in PROJECTIONS])


def declare(lib: ctypes.CDLL) -> None:
    lib.zoo_stack_step.argtypes = [ctypes.POINTER(_Block), ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                   ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                                   ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    lib.zoo_stack_step.restype = ctypes.c_int
    lib.zoo_block_work.argtypes = [ctypes.c_int64] * 8
    lib.zoo_block_work.restype = ctypes.c_int64


class Declined(ValueError):
    """Inputs the native step does not take (nothing has been written)."""


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise Declined(f"zoo::stack_step: {what}")


def _ok(t: torch.Tensor, dtype: torch.dtype) -> bool:
    return t.dtype is dtype and t.device.type == "cpu" and t.is_contiguous()


class Plan:
    """The argument array for one set of tensors, checked once: every shape the C code assumes."""

    def __init__(self, weights: Sequence[torch.Tensor | Quantized], kc: Sequence[torch.Tensor], vc: Sequence[torch.Tensor],
                 config: Sequence[int], scales: Sequence[float]):
        n = len(kc)
        _need(n > 0 and len(vc) == n and len(weights) == PER_BLOCK * n and len(config) == 2 * n
              and len(scales) == 2 * n, "9 weights, 2 config ints and 2 scales per cache layer")
        self.args = (_Block * n)()
        self.dims: list[tuple[int, ...]] = []
        self._work: dict[tuple[int, int], int] = {}
        self.batch = kc[0].shape[0] if kc[0].dim() == 4 else -1
        for l, arg in enumerate(self.args):
            ws = weights[PER_BLOCK * l:PER_BLOCK * (l + 1)]
            an, fn, wq, wk, wv, wo, wg, wu, wd = ws
            k, v = kc[l], vc[l]
            dtype = an.dtype
            _need(dtype in _STORED and _ok(an, dtype) and _ok(fn, dtype), "norm weights float32/bf16, CPU")
            projs = ws[2:]
            _need(all(readable(w) is None if isinstance(w, Quantized) else _ok(w, w.dtype) and w.dtype in _STORED
                      for w in projs), "projections float32/bf16 or int8/int4 as stored (runtime/quant), CPU")
            _need(k.dtype in _STORED and _ok(k, k.dtype) and _ok(v, k.dtype), "cache of one dtype (float32/bf16), CPU")
            _need(k.dim() == 4 and v.shape == k.shape and k.shape[0] == self.batch, "cache layers (B, Hkv, max_len, hd)")
            _, hkv, max_len, hd = k.shape
            d, f = an.shape[0] if an.dim() == 1 else -1, wg.shape[0] if len(wg.shape) == 2 else -1
            h = wq.shape[0] // hd if len(wq.shape) == 2 and hd > 0 else 0
            _need(hd >= 2 and hd % 2 == 0 and hkv > 0 and h > 0 and h % hkv == 0 and f > 0, "head_dim even, H % Hkv == 0")
            shapes = [(an, (d,)), (fn, (d,)), (wq, (h * hd, d)), (wk, (hkv * hd, d)), (wv, (hkv * hd, d)),
                      (wo, (d, h * hd)), (wg, (f, d)), (wu, (f, d)), (wd, (d, f))]
            _need(all(tuple(w.shape) == s for w, s in shapes), "weight shapes of one block")
            window, rope = config[2 * l:2 * l + 2]
            arg.D, arg.H, arg.Hkv, arg.hd, arg.F = d, h, hkv, hd, f
            arg.window, arg.max_len, arg.rope = window, max_len, int(bool(rope))
            arg.eps, arg.scale = scales[2 * l], scales[2 * l + 1]
            arg.wbf16, arg.kvbf16 = dtype is torch.bfloat16, k.dtype is torch.bfloat16
            arg.attn_norm, arg.ffn_norm = an.data_ptr(), fn.data_ptr()
            for name, w in zip(PROJECTIONS, projs):
                describe(w, getattr(arg, name))
            arg.kc, arg.vc = k.data_ptr(), v.data_ptr()
            self.dims.append((d, h, hkv, hd, f, max_len))
        _need(len({dm[0] for dm in self.dims}) == 1, "one model width for all blocks")
        roped = {dm[3] for dm, arg in zip(self.dims, self.args) if arg.rope}
        _need(len(roped) <= 1, "one RoPE table size for the whole stack")
        self.rope_dim = roped.pop() if roped else 0
        self.max_len = min(dm[5] for dm in self.dims)

    def work(self, lib: ctypes.CDLL, rows: int, threads: int) -> int:
        """Scratch floats for a step of `rows` rows on `threads` threads (the largest block's)."""
        key = (rows, threads)
        if key not in self._work:
            self._work[key] = max(lib.zoo_block_work(rows, *d[:5], d[5], threads) for d in self.dims)
        return self._work[key]


# the tensors' (address, shape, dtype) and the numbers -> plan; a few stacks (a model, its
# draft, a test's) at once. Addresses, not tensors, are kept: nothing is held alive, and a plan
# is only used for tensors that are at those addresses with those shapes now.
_PLANS: OrderedDict = OrderedDict()
_MAX_PLANS = 8


def plan_for(weights: Sequence[torch.Tensor | Quantized], kc: Sequence[torch.Tensor], vc: Sequence[torch.Tensor],
             config: Sequence[int], scales: Sequence[float]) -> Plan:
    ts = [*weights, *kc, *vc]
    key = (tuple(map(torch.Tensor.data_ptr, ts)), tuple(t.shape for t in ts), tuple(t.dtype for t in ts),
           tuple(config), tuple(scales))
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = Plan(weights, kc, vc, config, scales)
        if len(_PLANS) > _MAX_PLANS:
            _PLANS.popitem(last=False)
    return plan


def run_step(x: torch.Tensor, weights: Sequence[torch.Tensor], kc: Sequence[torch.Tensor], vc: Sequence[torch.Tensor],
             cos: torch.Tensor | None, sin: torch.Tensor | None, config: Sequence[int], scales: Sequence[float],
             start: int, parallel: int) -> torch.Tensor:
    """The step (see ops.stack_step); raises Declined for inputs the C code does not take."""
    return execute(plan_for(weights, kc, vc, config, scales), x, cos, sin, start, parallel)


def execute(plan: Plan, x: torch.Tensor, cos: torch.Tensor | None, sin: torch.Tensor | None, start: int,
            parallel: int) -> torch.Tensor:
    """The step with a plan whose tensors are the ones it was built from."""
    n = len(plan.args)
    _need(x.dim() == 3 and x.dtype in _STORED and x.device.type == "cpu", "x (B, T, D) float32/bf16 on the CPU")
    b, t, d = x.shape
    _need(b == plan.batch and d == plan.dims[0][0] and 0 < b * t <= MAX_ROWS and 0 <= start <= plan.max_len - t
          and 0 <= parallel <= n, f"x (B, T, D) with B * T <= {MAX_ROWS}, slots start + T <= max_len, parallel <= L")
    if plan.rope_dim:
        _need(cos is not None and sin is not None and _ok(cos, torch.float32) and _ok(sin, torch.float32)
              and cos.numel() == sin.numel() == b * t * plan.rope_dim, "RoPE tables (B, T, hd) float32")
    lib = library()
    if lib is None:
        raise RuntimeError("zoo native kernels are not available on this machine")
    threads = torch.get_num_threads()
    work = torch.empty(plan.work(lib, b * t, threads), dtype=torch.float32)
    # the residual stream is float32 inside the call whatever the parameters' dtype
    if parallel:
        y = torch.empty(parallel, *x.shape, dtype=torch.float32)
        y[0] = x
    else:
        y = x.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
    rc = lib.zoo_stack_step(plan.args, n, b, t, start, threads, cos.data_ptr() if plan.rope_dim else None,
                            sin.data_ptr() if plan.rope_dim else None, y.data_ptr(), work.data_ptr(), parallel)
    if rc != 0:
        raise RuntimeError(f"zoo_stack_step failed ({rc})")
    return y
