"""Human-readable reports: `zoo show` and `zoo compile --explain`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import Compiled
    from .passes import Accounting


def human(n: float, unit: str = "") -> str:
    for suffix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n:g}{unit}"


def human_bytes(n: float) -> str:
    for suffix, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {suffix}"
    return f"{int(n)} B"


def render_accounting(acc: "Accounting") -> list[str]:
    lines = [f"parameters       {acc.params:,} ({human(acc.params)})"]
    for part, n in acc.params_by_part.items():
        if n:
            lines.append(f"  {part:<14} {n:,}")
    if acc.active_params and acc.active_params != acc.params:
        lines.append(f"active/token     {acc.active_params:,} ({human(acc.active_params)}; experts left out by the router)")
    lines.append(f"weights          {human_bytes(acc.weight_bytes['bfloat16'])} bf16, "
                 f"{human_bytes(acc.weight_bytes['float32'])} fp32")
    if acc.stored is not None:
        q = acc.stored
        lines.append(f"stored ({q.scheme:<8}) {human_bytes(q.total(4))} with the rest fp32, {human_bytes(q.total(2))} "
                     f"with it bf16: {q.matrices} matrices, {q.quantized_params:,} weights in "
                     f"{human_bytes(q.quantized_bytes)} (scales included)")
    lines.append(f"KV cache         {human_bytes(acc.kv_cache_bytes(1))}/token bf16, "
                 f"{human_bytes(acc.kv_cache_bytes(acc.context))} at {acc.context:,} tokens")
    lines.append(f"FLOPs/token      {human(acc.flops_per_token)} (forward, context {acc.context:,})")
    return lines


def render_plan(c: "Compiled") -> str:
    b = c.backend
    lines = [f"model   {c.spec.name}", f"backend {b.name}" + ("" if b.available else "  [REFUSED]") + f" — {b.why}"]
    if c.kernels:
        width = max(len(k.op) for k in c.kernels)
        kw = max(len(k.kind) for k in c.kernels)
        lines.append("")
        lines.append(f"{'op':<{width}}  {'kind':<{kw}}  kernel — why")
        for k in c.kernels:
            lines.append(f"{k.op:<{width}}  {k.kind:<{kw}}  {k.kernel} — {k.why}")
    lines.append("")
    lines += render_accounting(c.accounting)
    return "\n".join(lines)
