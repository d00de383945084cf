"""A decode step through a stack of decoder blocks in one native call (block_step.c).

At batch 1 a block is ~25 small torch ops around four matrix-vector products, and their
dispatch costs about as much as the products. `decoder_stack_step` runs LLaMA-style blocks
(RMSNorm, attention with optional half-split RoPE, GQA and sliding window, no biases, SwiGLU)
on the CPU with float32 or bfloat16 parameters and cache (summed in float32: a bf16 model reads
half the bytes and keeps a float32 residual stream within the step), for steps of at most 32 rows (batch x new tokens) over an unpadded
dynamic KV cache, and declines everything else by returning None (the modules then run op by op).

The call is the custom op `zoo::stack_step` (ops.py), so `torch.compile` sees one op that writes
the cache layers; in eager code its implementation is called directly (step_call.py keeps the
ctypes argument array while the same tensors come back). What a stack of modules gives it
besides tensors (each block's window, RoPE, eps and scale) is kept per stack and recomputed when
a block's modules are replaced.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from . import MAX_ROWS, ops, ready, step_call  # rows per step, as the small-GEMM
from .weights import Quantized

_PARAMS = ("attn_norm", "ffn_norm", "attn.q", "attn.k", "attn.v", "attn.o", "ffn.gate", "ffn.up", "ffn.down")


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
    f = block.ffn
    if a.extras():
        return False, f"attention with {', '.join(a.extras())}"
    if any(lin.bias is not None for lin in (a.q, a.k, a.v, a.o)):
        return False, "attention has biases"
    if a.cfg.head_dim % 2 or a.cfg.n_heads % a.cfg.n_kv_heads:
        return False, "odd head_dim or uneven GQA groups"
    if not isinstance(f, GatedFFN) or f.act is not F.silu:
        return False, "ffn is not SwiGLU"
    if any(lin.bias is not None for lin in (f.gate, f.up, f.down)):
        return False, "ffn has biases"
    linears = (a.q, a.k, a.v, a.o, f.gate, f.up, f.down)
    for lin in linears:
        if _stored_name(lin) is None:
            return False, f"a projection ({type(lin).__name__}) without a weight matrix the kernels read"
        if lin._parameters.get("qweight") is not None and (lin.group_size or 32) % 32:
            return False, f"int4 group size {lin.group_size} (the kernels read multiples of 32)"
    return True, "LLaMA-style block"


def _stored_name(lin: Any) -> str | None:
    """The parameter holding a projection's matrix: `weight` (float) or `qweight` (a QuantLinear)."""
    for name in ("weight", "qweight"):
        if isinstance(lin._parameters.get(name), torch.Tensor):
            return name
    return None


def _weight_of(m: Any) -> torch.Tensor | Quantized:
    """What the plan reads for one of a block's 9 modules: the float matrix, or the quantized one."""
    if "qweight" in m._parameters:
        return Quantized.of(m)
    return m._parameters["weight"]


def _ok(t: torch.Tensor, dtypes: tuple[torch.dtype, ...] = (torch.float32,)) -> bool:
    return t.dtype in dtypes and t.device.type == "cpu" and t.is_contiguous()


_STORED = (torch.float32, torch.bfloat16)  # parameters and cache: read as they are, summed in float32
_PATHS = tuple(tuple(n.split(".")) for n in _PARAMS)


def _modules(blocks: Sequence[Any]) -> list[Any] | None:
    """The 9 weight-holding modules of every block, walked live (None where one is missing)."""
    out = []
    for blk in blocks:
        for path in _PATHS:
            m = blk
            for name in path:
                m = m._modules.get(name)
                if m is None:
                    return None
            out.append(m)
    return out


def _describe(blocks: Sequence[Any]) -> tuple[bool, list[int], list[float], int]:
    """(takes them, (window, rope) and (eps, scale) per block, the RoPE table width or 0)."""
    if not all(structure(blk)[0] for blk in blocks):
        return False, [], [], 0
    config: list[int] = []
    scales: list[float] = []
    for blk in blocks:
        c = blk.attn.cfg
        config += [c.sliding_window or 0, int(c.rope is not None)]
        scales += [float(blk.attn_norm.eps), float(blk.attn.scale)]
    roped = {blk.attn.cfg.head_dim for blk in blocks if blk.attn.cfg.rope is not None}
    return len(roped) <= 1, config, scales, (roped.pop() if len(roped) == 1 else 0)


class _Stack:
    """One stack of blocks over one cache in eager code: its modules, what `_describe` says, and the
    native argument array, kept while each weight is the same tensor at the same address and the
    cache is the same (a `.to()`, a `load_state_dict(assign=True)` or a new cache rebuilds it)."""

    def __init__(self, blocks: Sequence[Any], cache: Any):
        self.cache = weakref.ref(cache)
        self.plan: step_call.Plan | None = None
        self.slots: list[tuple[dict, Any, int]] = []  # (module._parameters, weak weight, its address)
        mods = _modules(blocks)
        self.ok, self.config, self.scales, self.rope_dim = _describe(blocks) if mods is not None else (False, [], [], 0)
        if not self.ok:
            return
        weights = [_weight_of(m) for m in mods]  # type: ignore[union-attr]
        layers = [blk.attn.layer for blk in blocks]
        try:
            self.plan = step_call.Plan(weights, [cache.k[i] for i in layers], [cache.v[i] for i in layers],
                                       self.config, self.scales)
        except step_call.Declined:
            self.ok = False
            return
        self.slots = []  # (module._parameters, name, weak tensor, its address) for every stored tensor
        for m in mods:  # type: ignore[union-attr]
            for name in ("weight", "qweight", "scales", "zeros"):
                t = m._parameters.get(name)
                if t is not None:
                    self.slots.append((m._parameters, name, weakref.ref(t), t.data_ptr()))

    def valid(self, cache: Any) -> bool:
        if self.cache() is not cache:
            return False
        for params, name, ref, p in self.slots:
            w = params.get(name)
            if w is None or w is not ref() or w.data_ptr() != p:
                return False
        return True


# first block of a stack -> {ids of the stack's blocks: _Stack}; beside the modules rather than
# in them, so a model can still be deep-copied or pickled (ctypes pointers cannot) and an entry
# goes when its blocks do
_STACKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _tensors_ok(weights: Sequence[torch.Tensor], kc: Sequence[torch.Tensor], vc: Sequence[torch.Tensor]) -> bool:
    """What the step's implementation checks when it builds its arguments, for a tracer (whose
    fake tensors are only checked here): one stored dtype per block, CPU, contiguous."""
    for l in range(len(kc)):
        ws = weights[9 * l:9 * l + 9]
        if not all(_ok(w, (ws[0].dtype,)) for w in ws) or ws[0].dtype not in _STORED:
            return False
        if not (_ok(kc[l], _STORED) and _ok(vc[l], (kc[l].dtype,))):
            return False
    return True


def decoder_stack_step(blocks: Sequence[Any], x: torch.Tensor, ropes: Sequence[Any], layout: Any,
                       cache: Any, parallel: int = 0) -> torch.Tensor | None:
    """`blocks` applied in order to x (B, T, dim) for a decode step, their KV cache layers
    written. With `parallel` = p > 0, the last p blocks run side by side on the output of the
    others (a multi-token model's heads over its trunk), and the result is (p, B, T, dim).
    None (nothing written) where the native step does not apply."""
    if cache is None or cache.static or layout.key_valid is not None or layout.segments is not None or not blocks:
        return None
    b, t, _ = x.shape
    if b * t > MAX_ROWS or b != cache.batch or not _ok(x, _STORED) or layout.start + t > cache.max_len:
        return None
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in blocks[0].parameters())):
        return None
    parallel = int(parallel)
    if not 0 <= parallel <= len(blocks):
        raise ValueError(f"parallel={parallel} with {len(blocks)} blocks")
    if not ready():
        return None
    traced = ops.traced(x)
    if traced:  # a tracer reads the modules once per graph and checks the tensors' metadata
        mods = _modules(blocks)
        ok, config, scales, rope_dim = _describe(blocks) if mods is not None else (False, [], [], 0)
        if not ok or any("qweight" in m._parameters for m in mods):  # type: ignore[union-attr]
            return None  # quantized stacks: eager only (the op's signature holds plain weight tensors)
    else:
        stacks = _STACKS.setdefault(blocks[0], {})
        key = tuple(map(id, blocks))
        stack = stacks.get(key)
        if stack is None or not stack.valid(cache):
            stack = stacks[key] = _Stack(blocks, cache)
        if not stack.ok:
            return None
        rope_dim = stack.rope_dim
    cos = sin = None
    if rope_dim:  # the blocks' tables are one pair, built once per forward
        rope = next(r for r in ropes if r is not None)
        if any(r is not rope for r in ropes if r is not None):
            return None
        cos, sin = rope
        if not (_ok(cos) and _ok(sin)) or cos.numel() != b * t * rope_dim:
            return None
    if not traced:
        try:
            return step_call.execute(stack.plan, x, cos, sin, layout.start, parallel).to(x.dtype)  # type: ignore[arg-type]
        except step_call.Declined:
            return None
    weights = [m.weight for m in mods]  # type: ignore[union-attr]
    layers = [blk.attn.layer for blk in blocks]
    kc, vc = [cache.k[i] for i in layers], [cache.v[i] for i in layers]
    if not _tensors_ok(weights, kc, vc):
        return None
    return ops.stack_step(x, weights, kc, vc, cos, sin, config, scales, layout.start, parallel).to(x.dtype)
