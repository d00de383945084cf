"""Sparse mixture of experts (Mixtral, Qwen2-MoE, Branch-Train-MiX): a router and n_experts FFNs
of one shape, stored stacked; each token runs the top_k experts its router picks, and, with a
`shared` expert (Qwen2-MoE), one dense FFN every token runs, optionally scaled by a sigmoid gate."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from ...runtime.modules.build import Build
from ...runtime.modules.moe import MoE as MoEModule
from ...runtime.modules.moe import MoEConfig
from ..ir import Dim, Node, Param, Scope, join
from ..registry import Cost, FieldError, KernelRow, Kind, Shard, Slot, Strict, register
from ..values import MAX_EXPERTS, Number, Size
from .ops import linear_node, require_divisible


class Router(Strict):
    """How a token picks its experts: softmax over the router's logits (float32), the top_k kept."""

    aux_loss_coef: Number(ge=0, le=100) = Field(0.01, description="weight of the Switch load-balancing loss in loss()")
    normalize_top_k: bool = Field(True, description="renormalize the kept probabilities to sum to 1 (Mixtral); "
                                  "false keeps the softmax over all experts (Qwen2-MoE's norm_topk_prob: false)")
    weight_dtype: Literal["float32", "activations"] = Field(
        "float32", description="the dtype the kept routing weights scale the experts' outputs in: float32 "
        "(Mixtral), or the activations' (Qwen2-MoE rounds them to it after the top-k); equal in float32")


@register
class MoE(Kind):
    """Sparse mixture of experts: sum over the top_k experts the router picks of
    g_i(x) * expert_i(x), plus shared(x) (times sigmoid(shared_gate x)) when there is a shared
    expert. Routed experts share one shape and are stored stacked."""

    slots = ("ffn",)
    part = "ffn"
    kind: Literal["moe"] = "moe"
    n_experts: Size(MAX_EXPERTS)
    top_k: Size(MAX_EXPERTS) = 2
    expert: Annotated[Kind, Slot("expert")] = Field(description="the shape of every expert (an ffn without biases)")
    router: Router = Field(default_factory=Router)
    shared: Annotated[Kind | None, Slot("expert")] = Field(
        None, description="a dense ffn every token runs, added to the routed experts' output (Qwen2-MoE)")
    shared_gate: bool = Field(False, description="scale the shared expert by sigmoid(w x), w a bias-free "
                              "Linear(dim -> 1) (Qwen2-MoE's shared_expert_gate)")

    @model_validator(mode="after")
    def _check(self) -> "MoE":
        if self.top_k > self.n_experts:
            raise FieldError(("top_k",), f"top_k ({self.top_k}) must be at most n_experts ({self.n_experts})")
        if self.expert.bias:  # type: ignore[attr-defined]
            raise FieldError(("expert", "bias"), "stacked experts have no biases; set bias: false")
        if self.shared_gate and self.shared is None:
            raise FieldError(("shared_gate",), "shared_gate scales the shared expert; give `shared` too")
        return self

    @property
    def hidden_dim(self) -> int | None:
        """One routed expert's hidden size."""
        return self.expert.hidden_dim  # type: ignore[attr-defined]

    @property
    def bias(self) -> bool:
        return False

    def size_problem(self, dim: int) -> str | None:
        why = self.expert.size_problem(dim)  # type: ignore[attr-defined]
        if why is None and self.shared is not None:
            why = self.shared.size_problem(dim)  # type: ignore[attr-defined]
            return f"shared expert: {why}" if why else None
        return why

    def sized(self, dim: int) -> "MoE":
        update: dict[str, Any] = {"expert": self.expert.sized(dim)}  # type: ignore[attr-defined]
        if self.shared is not None:
            update["shared"] = self.shared.sized(dim)  # type: ignore[attr-defined]
        return self.model_copy(update=update)

    def describe(self) -> str:
        out = f"moe {self.n_experts}x {self.expert.describe()}, top-{self.top_k}"
        if not self.router.normalize_top_k:
            out += " (not renormalized)"
        if self.shared is not None:
            out += f", shared {self.shared.describe()}" + (" (sigmoid-gated)" if self.shared_gate else "")
        return out

    # ------------------------------------------------------------------ phases
    def ir(self, path: str, ctx: Scope) -> Node:
        """A router linear [experts, dim] and the experts' stacked weights: experts.gate and
        experts.up [experts, hidden, dim] (no gate for plain-MLP experts), experts.down
        [experts, dim, hidden]; the shared expert is an ordinary dense ffn node (`shared.gate`,
        `.up`, `.down`) and its gate a linear [1, dim] (`shared_gate`)."""
        assert self.hidden_dim is not None, "size the experts first"
        dim, n, hidden = ctx.width, Dim("experts", self.n_experts), Dim("hidden", self.hidden_dim)
        names = ("gate", "up") if self.expert.gated else ("up",)  # type: ignore[attr-defined]
        params = [Param(f"experts.{p}", (n, hidden, dim)) for p in names] + [Param("experts.down", (n, dim, hidden))]
        children = [linear_node(join(path, "router"), dim, n, False)]
        if self.shared is not None:
            children.append(self.shared.ir(join(path, "shared"), ctx))
            if self.shared_gate:
                children.append(linear_node(join(path, "shared_gate"), dim, Dim("gate", 1), False))
        return Node(self, path, params, children)

    def cost(self, node: Node, ctx: Any, inner: Cost) -> Cost:
        """Each token runs top_k of the n_experts routed experts; the router and the shared
        expert (children: `inner`) run on every token, so they count as active."""
        experts = sum(p.numel for p in node.params)
        e, k = self.n_experts, self.top_k
        return inner + Cost({"": experts}, flops=2 * experts // e * k, inactive=experts // e * (e - k))

    def kernels(self, node: Node, backend: Any) -> list[KernelRow]:
        shared = ""
        if self.shared is not None:
            shared = f" + shared {self.shared.kind_name} expert" + (" (sigmoid gate)" if self.shared_gate else "")
        return [KernelRow(node.path, self.kind_name,
                          f"router + top-{self.top_k} of {self.n_experts} {self.expert.kind_name} experts, sparse "
                          f"dispatch{shared}", "tokens grouped per expert, each expert runs only on its tokens, "
                          "index_add back" + ("; the shared expert runs densely on every token" if shared else ""))]

    def shard(self, node: Node, tp: int) -> dict[str, Shard]:
        """Every rank holds every expert, cut on the hidden dim (as a dense FFN): experts.gate
        and .up [experts, hidden, dim] on dim 1, experts.down [experts, dim, hidden] on dim 2;
        the router is replicated (every rank routes alike), the shared expert is its own kind's."""
        assert self.hidden_dim is not None
        require_divisible(join(node.path, "expert"), "hidden_dim", self.hidden_dim, tp,
                          "each expert's hidden units divide among the ranks")
        return {join(node.path, p.name): Shard("rowwise", 2) if p.name.endswith("down") else Shard("colwise", 1)
                for p in node.params}

    def lower(self, node: Node | None = None, backend: Any = None) -> Build:
        e, r = self.expert, self.router
        cfg = MoEConfig(self.n_experts, self.top_k, e.hidden_dim, e.act, e.gated,  # type: ignore[attr-defined]
                        r.aux_loss_coef, r.normalize_top_k, r.weight_dtype == "float32",
                        self.shared.lower() if self.shared is not None else None, self.shared_gate)
        return Build.of(MoEModule, cfg=cfg)
