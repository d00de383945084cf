"""A decode step through a stack of decoder blocks in one native call (block_step.c).

At batch 1 a block is ~25 small torch ops around four matrix-vector products, and their
dispatch costs about as much as the products. `decoder_stack_step` runs LLaMA-style blocks
(RMSNorm, attention with optional half-split RoPE, GQA and sliding window, no biases, SwiGLU)
on the CPU with float32 or bfloat16 parameters and cache (summed in float32: a bf16 model reads
half the bytes and keeps a float32 residual stream within the step), for steps of at most 32 rows (batch x new tokens) over an unpadded
dynamic KV cache, and declines everything else by returning None (the modules then run op by op).

The ctypes argument array for a stack is built once and kept for its first block; every call
checks that each parameter is still the same tensor at the same address (a `.to()`, a
`load_state_dict(assign=True)` or a new cache rebuilds it), which costs ~50 us for 12 blocks.
"""

from __future__ import annotations

import ctypes
import weakref
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from . import MAX_ROWS  # rows per step, as the small-GEMM
_PARAMS = ("attn_norm", "ffn_norm", "attn.q", "attn.k", "attn.v", "attn.o", "ffn.gate", "ffn.up", "ffn.down")


class _Block(ctypes.Structure):
    _fields_ = ([(n, ctypes.c_int64) for n in ("D", "H", "Hkv", "hd", "F", "window", "max_len", "rope", "wbf16",
                                               "kvbf16")]
                + [("eps", ctypes.c_float), ("scale", ctypes.c_float)]
                + [(n, ctypes.c_void_p) for n in ("attn_norm", "ffn_norm", "wq", "wk", "wv", "wo", "wg", "wu", "wd",
                                                  "kc", "vc")])


def declare(lib: ctypes.CDLL) -> None:
    lib.zoo_stack_step.argtypes = [ctypes.POINTER(_Block), ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                   ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                                   ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    lib.zoo_stack_step.restype = ctypes.c_int
    lib.zoo_block_work.argtypes = [ctypes.c_int64] * 8
    lib.zoo_block_work.restype = ctypes.c_int64


def structure(block: Any) -> tuple[bool, str]:
    """Whether `block` has the shape the native step implements (dtypes and devices are checked
    when the argument array is built)."""
    from ..modules.decoder import Block
    from ..modules.ffn import GatedFFN
    from ..modules.norm import RMSNorm

    if type(block) is not Block:
        return False, f"{type(block).__name__} is not a plain decoder block"
    if not (isinstance(block.attn_norm, RMSNorm) and isinstance(block.ffn_norm, RMSNorm)):
        return False, "norm is not RMSNorm"
    if block.attn_norm.unit_offset or block.ffn_norm.unit_offset:
        return False, "RMSNorm scales by (1 + w)"
    if block.attn_norm.eps != block.ffn_norm.eps:
        return False, "the two norms' eps differ"
    a = block.attn
    if a.extras():
        return False, f"attention with {', '.join(a.extras())}"
    if any(lin.bias is not None for lin in (a.q, a.k, a.v, a.o)):
        return False, "attention has biases"
    if a.cfg.head_dim % 2 or a.cfg.n_heads % a.cfg.n_kv_heads:
        return False, "odd head_dim or uneven GQA groups"
    f = block.ffn
    if not isinstance(f, GatedFFN) or f.act is not F.silu:
        return False, "ffn is not SwiGLU"
    if any(lin.bias is not None for lin in (f.gate, f.up, f.down)):
        return False, "ffn has biases"
    return True, "LLaMA-style block"


def _ok(t: torch.Tensor, dtypes: tuple[torch.dtype, ...] = (torch.float32,)) -> bool:
    return t.dtype in dtypes and t.device.type == "cpu" and t.is_contiguous()


_STORED = (torch.float32, torch.bfloat16)  # parameters and cache: read as they are, summed in float32


# first block of a stack -> {ids of the stack's blocks: plan}; beside the modules rather than in
# them, so a model can still be deep-copied or pickled (ctypes pointers cannot) and a plan goes
# when its blocks do
_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _Plan:
    """The argument array for one stack and one cache, and what it was built from."""

    def __init__(self, blocks: Sequence[Any], cache: Any):
        # (module._parameters, a weak reference to the weight it held, that weight's address)
        self.slots: list[tuple[dict, Any, int]] = []
        self.args = (_Block * len(blocks))()
        self.cache = weakref.ref(cache)
        self.ok = True
        self._work: dict[tuple[int, int], int] = {}
        self.dims: list[tuple[int, ...]] = []
        for arg, blk in zip(self.args, blocks):
            mods = [blk.get_submodule(n) for n in _PARAMS]
            weights = [m._parameters["weight"] for m in mods]
            dtype = weights[0].dtype
            if not all(_ok(w, _STORED) and w.dtype is dtype for w in weights):
                self.ok = False
                return
            self.slots += [(m._parameters, weakref.ref(w), w.data_ptr()) for m, w in zip(mods, weights)]
            a, f = blk.attn, blk.ffn
            c = a.cfg
            kc, vc = cache.k[a.layer], cache.v[a.layer]
            if not (_ok(kc, _STORED) and _ok(vc, (kc.dtype,))):
                self.ok = False
                return
            hidden = f.gate.weight.shape[0]
            arg.D, arg.H, arg.Hkv, arg.hd, arg.F = a.q.weight.shape[1], c.n_heads, c.n_kv_heads, c.head_dim, hidden
            arg.window, arg.max_len, arg.eps, arg.scale = c.sliding_window or 0, kc.shape[2], blk.attn_norm.eps, a.scale
            arg.rope = c.rope is not None
            arg.wbf16, arg.kvbf16 = dtype is torch.bfloat16, kc.dtype is torch.bfloat16
            (arg.attn_norm, arg.ffn_norm, arg.wq, arg.wk, arg.wv, arg.wo, arg.wg, arg.wu,
             arg.wd) = [w.data_ptr() for w in weights]
            arg.kc, arg.vc = kc.data_ptr(), vc.data_ptr()
            self.dims.append((arg.D, c.n_heads, c.n_kv_heads, c.head_dim, hidden, kc.shape[2]))
        roped = {blk.attn.cfg.head_dim for blk in blocks if blk.attn.cfg.rope is not None}
        self.ok = len(roped) <= 1  # one RoPE table size for the whole stack
        self.rope_dim = roped.pop() if len(roped) == 1 else 0

    def valid(self, cache: Any) -> bool:
        if self.cache() is not cache:
            return False
        for params, ref, p in self.slots:
            w = params["weight"]
            if w is not ref() or w.data_ptr() != p:
                return False
        return True

    def work(self, lib: ctypes.CDLL, rows: int, threads: int) -> int:
        """Scratch floats for a step of `rows` rows on `threads` threads (the largest block's)."""
        key = (rows, threads)
        if key not in self._work:
            self._work[key] = max(lib.zoo_block_work(rows, *d[:5], d[5], threads) for d in self.dims)
        return self._work[key]


def decoder_stack_step(blocks: Sequence[Any], x: torch.Tensor, ropes: Sequence[Any], layout: Any,
                       cache: Any, parallel: int = 0) -> torch.Tensor | None:
    """`blocks` applied in order to x (B, T, dim) for a decode step, their KV cache layers
    written. With `parallel` = p > 0, the last p blocks run side by side on the output of the
    others (a multi-token model's heads over its trunk), and the result is (p, B, T, dim).
    None (nothing written) where the native step does not apply."""
    from . import library

    if cache is None or cache.static or layout.key_valid is not None or layout.segments is not None or not blocks:
        return None
    b, t, _ = x.shape
    if b * t > MAX_ROWS or b != cache.batch or not _ok(x, _STORED):
        return None
    if torch.is_grad_enabled() and (x.requires_grad or blocks[0].attn.q.weight.requires_grad):
        return None
    plans = _PLANS.setdefault(blocks[0], {})
    key = tuple(map(id, blocks))
    plan = plans.get(key)
    if plan is None or not plan.valid(cache):
        if not all(structure(blk)[0] for blk in blocks):
            return None
        plan = plans[key] = _Plan(blocks, cache)
    if not plan.ok:
        return None
    lib = library()
    if lib is None:
        return None
    cos = sin = None
    if plan.rope_dim:  # the blocks' tables are one pair, built once per forward
        rope = next(r for r in ropes if r is not None)
        if any(r is not rope for r in ropes if r is not None):
            return None
        cos, sin = rope
        if not (_ok(cos) and _ok(sin)) or cos.numel() != b * t * plan.rope_dim:
            return None
    threads = torch.get_num_threads()
    work = torch.empty(plan.work(lib, b * t, threads), dtype=torch.float32)
    parallel = int(parallel)
    if not 0 <= parallel <= len(blocks):
        raise ValueError(f"parallel={parallel} with {len(blocks)} blocks")
    # the residual stream is float32 inside the call whatever the parameters' dtype
    if parallel:
        y = torch.empty(parallel, *x.shape, dtype=torch.float32)
        y[0] = x
    else:
        y = x.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
    rc = lib.zoo_stack_step(plan.args, len(blocks), b, t, layout.start, threads, cos.data_ptr() if cos is not None else None,
                            sin.data_ptr() if sin is not None else None, y.data_ptr(), work.data_ptr(), parallel)
    return y.to(x.dtype) if rc == 0 else None
