"""The IR's building blocks that no spec names directly: linear projections and the token
embedding. Other kinds make their nodes with `linear_node` and `embedding_node`."""

from __future__ import annotations

from typing import Any, Literal

from ..errors import Problem, SpecError
from ..ir import Dim, Node, Param, join
from ..registry import REPLICATE, Cost, KernelRow, Kind, Shard, register


@register
class Linear(Kind):
    """y = x W^T (+ b): 2 FLOPs per weight per token. Its kernel is the backend's linear one
    (one `--explain` row for all of them)."""

    slots = ("op",)
    kind: Literal["linear"] = "linear"
    quantizable = True

    def cost(self, node: Node, ctx: Any, inner: Cost) -> Cost:
        return super().cost(node, ctx, inner) + Cost(flops=2 * node.params[0].numel)

    def kernels(self, node: Node, backend: Any) -> list[KernelRow]:
        q = node.attrs.get("quant")
        if q is None:
            return []  # the backend's linear row covers it
        if q.bits == 8:
            kernel = ("int8 weights: torch._weight_int8pack_mm (CPU: bf16/fp16, or float32 calls of <= 8 rows); "
                      "dequantize + matmul otherwise")
        else:
            kernel = (f"int4 g{q.group_size} weights: aten._weight_int4pack_mm_for_cpu (CPU, out_features % 16 == 0: "
                      "bf16/fp16, or float32 calls of <= 8 rows); dequantize + matmul otherwise")
        return [KernelRow(node.path, "linear", kernel, "quantization: weight-only, activations stay float")]


@register
class Embedding(Kind):
    """A lookup table (vocab, dim): no FLOPs."""

    slots = ("op",)
    kind: Literal["embedding"] = "embedding"
    part = "embedding"

    def kernels(self, node: Node, backend: Any) -> list[KernelRow]:
        return [KernelRow(node.path, "embedding", "torch.embedding (gather)", "a lookup, no backend-specific kernel")]


LINEAR, EMBEDDING = Linear(), Embedding()


def linear_node(path: str, d_in: Dim, d_out: Dim, bias: bool, part: str | None = None) -> Node:
    params = [Param("weight", (d_out, d_in))]
    if bias:
        params.append(Param("bias", (d_out,), "zeros"))
    return Node(LINEAR, path, params, attrs={"in": d_in, "out": d_out}, part=part)


def embedding_node(path: str, vocab: Dim, dim: Dim) -> Node:
    return Node(EMBEDDING, path, [Param("weight", (vocab, dim))])


def linear_shard(node: Node, style: str) -> dict[str, Shard]:
    """A linear node split `colwise` (its outputs: weight dim 0 and the bias) or `rowwise` (its
    inputs: weight dim 1; the bias is added once, after the ranks' partial sums are reduced)."""
    dim = {"colwise": 0, "rowwise": 1, "vocab": 0}[style]
    out = {join(node.path, "weight"): Shard(style, dim)}
    for p in node.params[1:]:
        out[join(node.path, p.name)] = Shard(style, 0) if dim == 0 else REPLICATE
    return out


def require_divisible(path: str, field: str, value: int, tp: int, what: str = "") -> None:
    """SpecError naming `field` when `value` does not split into `tp` equal parts."""
    if value % tp:
        raise SpecError(Problem(join(path, field), f"{value} is not divisible by tp ({tp})" + (f": {what}" if what else ""),
                                expected=f"a tp that divides {value}"))
