"""The IR's building blocks that no spec names directly: linear projections and the token
embedding. Other kinds make their nodes with `linear_node` and `embedding_node`."""

from __future__ import annotations

from typing import Any, Literal

from ..ir import Dim, Node, Param
from ..registry import Cost, KernelRow, Kind, register


@register
class Linear(Kind):
    """y = x W^T (+ b): 2 FLOPs per weight per token. Its kernel is the backend's linear one
    (one `--explain` row for all of them)."""

    slots = ("op",)
    kind: Literal["linear"] = "linear"

    def cost(self, node: Node, ctx: Any, inner: Cost) -> Cost:
        return super().cost(node, ctx, inner) + Cost(flops=2 * node.params[0].numel)


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
