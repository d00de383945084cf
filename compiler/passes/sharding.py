"""The sharding plan: how a model splits across `tp` tensor-parallel ranks and `fsdp` data-
parallel shards. Each node's kind says how the parameters it decides split (`Kind.shard`),
top-down: a parameter an ancestor claimed (an attention's q/k/v/o linears) keeps the
ancestor's answer, the rest are their own node's kind's (by default replicated). FSDP units are
the subtrees whose kind is one (`Kind.fsdp_unit`: the blocks); the rest goes with the root.

The plan is what the runtime applies (DTensor column-/row-parallel styles on the linears whose
weights it names, vocab-parallel embedding and output) and what `zoo show --tp N` prints.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import Problem, SpecError, UsageError
from ..ir import Node, Param
from ..registry import REPLICATE, Shard
from .accounting import DTYPE_BYTES, account


@dataclass(frozen=True)
class ParamPlan:
    """One parameter: its shape, how it splits, and the slice one tensor-parallel rank holds."""

    shape: tuple[int, ...]
    shard: Shard

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def local_shape(self, tp: int) -> tuple[int, ...]:
        if self.shard.dim is None:
            return self.shape
        return tuple(s // tp if i == self.shard.dim else s for i, s in enumerate(self.shape))

    def local_numel(self, tp: int) -> int:
        return self.numel if self.shard.dim is None else self.numel // tp


@dataclass(frozen=True)
class ShardingPlan:
    tp: int
    fsdp: int
    params: dict[str, ParamPlan]  # canonical name -> plan, in the IR's order
    fsdp_units: list[str]  # paths of the FSDP units (the root's remaining parameters form one more)
    kv_elems_per_token: int  # KV-cache elements per token on one tensor-parallel rank

    @property
    def total_params(self) -> int:
        return sum(p.numel for p in self.params.values())

    @property
    def tp_rank_params(self) -> int:
        """Parameters one tensor-parallel rank holds (before FSDP shards them)."""
        return sum(p.local_numel(self.tp) for p in self.params.values())

    @property
    def rank_params(self) -> int:
        """Parameters one rank of the tp x fsdp mesh stores: its tensor-parallel slice, cut
        fsdp ways (FSDP2 pads each parameter's dim 0 to a multiple of fsdp)."""
        total = 0
        for p in self.params.values():
            rows = p.local_shape(self.tp)[0]
            total += -(-rows // self.fsdp) * (p.local_numel(self.tp) // rows)
        return total

    def rank_bytes(self, dtype: str = "bfloat16") -> int:
        return self.rank_params * DTYPE_BYTES[dtype]

    def kv_bytes_per_token(self, dtype: str = "bfloat16") -> int:
        return self.kv_elems_per_token * DTYPE_BYTES[dtype]

    def by_style(self) -> dict[str, int]:
        """Parameters (whole-model counts) by style."""
        out: dict[str, int] = {}
        for p in self.params.values():
            out[p.shard.style] = out.get(p.shard.style, 0) + p.numel
        return out

    def sharded(self, name: str) -> bool:
        return self.params[name].shard.dim is not None


def _claims(node: Node, tp: int, plan: dict[str, Shard]) -> None:
    names = {n for n, _ in node.parameters()}
    for name, shard in node.spec.shard(node, tp).items():
        if name not in names:
            raise ValueError(f"{type(node.spec).__name__}.shard names {name!r}, no parameter of {node.path or '<root>'}")
        plan.setdefault(name, shard)  # an ancestor's claim stands
    for c in node.children:
        _claims(c, tp, plan)


def _check_divides(name: str, param: Param, shard: Shard, tp: int) -> None:
    if shard.dim is not None and param.shape[shard.dim].size % tp:
        d = param.shape[shard.dim]
        raise SpecError(Problem(name, f"{d.name} ({d.size}) is not divisible by tp ({tp})",
                                expected=f"a tp that divides {d.size}"))


def plan_sharding(ir: Node, tp: int = 1, fsdp: int = 1) -> ShardingPlan:
    """The plan for `tp` tensor-parallel ranks times `fsdp` FSDP shards; SpecError naming the
    spec field when a component does not split tp ways."""
    for flag, n in (("tp", tp), ("fsdp", fsdp)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise UsageError(f"{flag} must be a whole number >= 1, got {n!r}")
    claimed: dict[str, Shard] = {}
    _claims(ir, tp, claimed)
    params: dict[str, ParamPlan] = {}
    for name, p in ir.parameters():
        shard = claimed.get(name, REPLICATE)
        _check_divides(name, p, shard, tp)
        params[name] = ParamPlan(p.sizes, shard)
    units = [n.path for n in ir.walk() if type(n.spec).fsdp_unit]
    return ShardingPlan(tp, fsdp, params, units, account(ir).kv_bytes_per_token // tp)


def _gib(n: float) -> str:
    return f"{n / 2**30:,.2f} GiB" if n >= 2**28 else f"{n / 2**20:,.1f} MiB"


def render_sharding(plan: ShardingPlan) -> list[str]:
    """The lines `zoo show/compile --tp N --fsdp M` print."""
    tp, fsdp = plan.tp, plan.fsdp
    out = [f"sharding         tp {tp} x fsdp {fsdp} = {tp * fsdp} ranks"]
    per = plan.rank_params
    out.append(f"per rank         {per:,} parameters: {_gib(per * 2)} bf16, {_gib(per * 4)} fp32 "
               f"(whole model {_gib(plan.total_params * 2)} bf16)")
    out.append(f"KV per token     {plan.kv_bytes_per_token('bfloat16'):,} bytes bf16 per rank "
               f"({plan.kv_elems_per_token * tp * 2:,} whole)")
    styles = plan.by_style()
    total = max(plan.total_params, 1)
    out.append("split            " + ", ".join(f"{s} {n / total:.1%}" for s, n in sorted(styles.items(), key=lambda kv: -kv[1])))
    groups: dict[tuple[str, str, int | None], int] = {}
    for name, p in plan.params.items():
        short = ".".join("*" if part.isdigit() else part for part in name.split("."))
        groups.setdefault((short, p.shard.style, p.shard.dim), 0)
        groups[(short, p.shard.style, p.shard.dim)] += 1
    for (short, style, dim), n in groups.items():
        where = f"dim {dim}" if dim is not None else "whole on every rank"
        out.append(f"  {short:<40} {style:<10} {where}" + (f"  (x{n})" if n > 1 else ""))
    out.append(f"FSDP units       {len(plan.fsdp_units)} blocks + the root's remaining parameters")
    return out
