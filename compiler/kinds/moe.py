"""Sparse mixture of experts (Mixtral, Branch-Train-MiX): a router and n_experts FFNs of one
shape, stored stacked; each token runs the top_k experts its router picks."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from ...runtime.modules.build import Build
from ...runtime.modules.moe import MoE as MoEModule
from ...runtime.modules.moe import MoEConfig
from ..ir import Dim, Node, Param, Scope, join
from ..registry import Cost, FieldError, KernelRow, Kind, Slot, Strict, register
from ..values import MAX_EXPERTS, Number, Size
from .ops import linear_node


class Router(Strict):
    """How a token picks its experts: softmax over the router's logits (float32), the top_k kept."""

    aux_loss_coef: Number(ge=0, le=100) = Field(0.01, description="weight of the Switch load-balancing loss in loss()")
    normalize_top_k: bool = Field(True, description="renormalize the kept probabilities to sum to 1 (Mixtral)")


@register
class MoE(Kind):
    """Sparse mixture of experts: sum over the top_k experts the router picks of
    g_i(x) * expert_i(x). Experts share one shape and are stored stacked."""

    slots = ("ffn",)
    part = "ffn"
    kind: Literal["moe"] = "moe"
    n_experts: Size(MAX_EXPERTS)
    top_k: Size(MAX_EXPERTS) = 2
    expert: Annotated[Kind, Slot("expert")] = Field(description="the shape of every expert (an ffn without biases)")
    router: Router = Field(default_factory=Router)

    @model_validator(mode="after")
    def _check(self) -> "MoE":
        if self.top_k > self.n_experts:
            raise FieldError(("top_k",), f"top_k ({self.top_k}) must be at most n_experts ({self.n_experts})")
        if self.expert.bias:  # type: ignore[attr-defined]
            raise FieldError(("expert", "bias"), "stacked experts have no biases; set bias: false")
        return self

    @property
    def hidden_dim(self) -> int | None:
        """One expert's hidden size."""
        return self.expert.hidden_dim  # type: ignore[attr-defined]

    @property
    def bias(self) -> bool:
        return False

    def size_problem(self, dim: int) -> str | None:
        return self.expert.size_problem(dim)  # type: ignore[attr-defined]

    def sized(self, dim: int) -> "MoE":
        return self.model_copy(update={"expert": self.expert.sized(dim)})  # type: ignore[attr-defined]

    def describe(self) -> str:
        return f"moe {self.n_experts}x {self.expert.describe()}, top-{self.top_k}"

    # ------------------------------------------------------------------ phases
    def ir(self, path: str, ctx: Scope) -> Node:
        """A router linear [experts, dim] and the experts' stacked weights: experts.gate and
        experts.up [experts, hidden, dim] (no gate for plain-MLP experts), experts.down
        [experts, dim, hidden]."""
        assert self.hidden_dim is not None, "size the experts first"
        dim, n, hidden = ctx.width, Dim("experts", self.n_experts), Dim("hidden", self.hidden_dim)
        names = ("gate", "up") if self.expert.gated else ("up",)  # type: ignore[attr-defined]
        params = [Param(f"experts.{p}", (n, hidden, dim)) for p in names] + [Param("experts.down", (n, dim, hidden))]
        return Node(self, path, params, [linear_node(join(path, "router"), dim, n, False)])

    def cost(self, node: Node, ctx: Any, inner: Cost) -> Cost:
        """Each token runs top_k of the n_experts experts."""
        experts = sum(p.numel for p in node.params)
        e, k = self.n_experts, self.top_k
        return inner + Cost({"": experts}, flops=2 * experts // e * k, inactive=experts // e * (e - k))

    def kernels(self, node: Node, backend: Any) -> list[KernelRow]:
        return [KernelRow(node.path, self.kind_name,
                          f"router + top-{self.top_k} of {self.n_experts} {self.expert.kind_name} experts, sparse "
                          "dispatch", "tokens grouped per expert, each expert runs only on its tokens, index_add back")]

    def lower(self, node: Node | None = None, backend: Any = None) -> Build:
        e = self.expert
        cfg = MoEConfig(self.n_experts, self.top_k, e.hidden_dim, e.act, e.gated,  # type: ignore[attr-defined]
                        self.router.aux_loss_coef, self.router.normalize_top_k)
        return Build.of(MoEModule, cfg=cfg)
