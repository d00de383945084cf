"""Parameters, FLOPs per token and memory, from the IR's symbolic shapes. Each node's kind
says what its node costs given its children's cost (`Kind.cost`); a node with an accounting
part (attention, ffn, vision …) takes its whole subtree's parameters into that part."""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import Node
from ..quantization import StoredBytes, stored_bytes
from ..registry import Cost

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float8": 1, "int8": 1}
UNASSIGNED = "other"  # parameters no node with a part holds


@dataclass(frozen=True)
class Accounting:
    params: int
    params_by_part: dict[str, int]
    flops_per_token: int  # forward, at the given context length
    context: int
    kv_bytes_per_token: int  # per dtype byte, i.e. multiply by dtype size
    weight_bytes: dict[str, int]
    # parameters one token runs through: all but the experts its router leaves out (= params
    # for dense models; Mixtral-8x7B: 12.9B of 46.7B)
    active_params: int = 0
    # the spec's quantization: the bytes of the integer matrices and of what stays float
    stored: StoredBytes | None = None

    def kv_cache_bytes(self, tokens: int, dtype: str = "bfloat16") -> int:
        return self.kv_bytes_per_token * DTYPE_BYTES[dtype] * tokens


@dataclass(frozen=True)
class CostContext:
    context: int  # tokens of context the per-token FLOPs are averaged over


def _cost(node: Node, ctx: CostContext) -> Cost:
    inner = sum((_cost(c, ctx) for c in node.children), Cost())
    cost = node.spec.cost(node, ctx, inner)
    if node.part:
        cost = Cost({node.part: cost.total}, cost.flops, cost.kv_elems, cost.inactive)
    return cost


def account(ir: Node, context: int | None = None) -> Accounting:
    ctx = CostContext(context or ir.spec.language_model().max_seq_len)  # type: ignore[attr-defined]
    cost = _cost(ir, ctx)
    by_part = {(k or UNASSIGNED): v for k, v in cost.params.items() if v}
    total = cost.total
    weight_bytes = {k: total * v for k, v in DTYPE_BYTES.items() if k in ("float32", "bfloat16", "int8")}
    return Accounting(total, by_part, cost.flops, ctx.context, cost.kv_elems, weight_bytes, total - cost.inactive,
                      stored_bytes(ir, total))
