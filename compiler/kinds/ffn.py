"""Dense feed-forward kinds: gated (SwiGLU, GeGLU) and the plain two-layer MLP. Each is also an
MoE expert kind (slot `expert`)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from ...runtime.modules.build import Build
from ...runtime.modules.ffn import MLP, GatedFFN
from .. import registry
from ..errors import Problem
from ..ir import Dim, Node, Scope, join
from ..registry import KernelRow, Kind, Shard, register
from ..values import MAX_WIDTH, Number, Width
from .ops import linear_node, linear_shard, require_divisible


class DenseFFN(Kind):
    """Shared by the dense kinds: the size (explicit, or LLaMA's rule) and the bias switch."""

    slots = ("ffn", "expert")
    part = "ffn"
    gated: ClassVar[bool]
    activations: ClassVar[tuple[str, ...]]  # the runtime activations this kind can compute
    hidden_dim: Width | None = Field(None, description="explicit size; else the LLaMA rule")
    multiple_of: Width | None = Field(None, description="LLaMA rule: round up to a multiple of this")
    dim_multiplier: Number(gt=0, le=100) | None = Field(None, description="LLaMA rule: ffn_dim_multiplier")
    bias: bool = False

    @model_validator(mode="after")
    def _has_size(self) -> "DenseFFN":
        if self.hidden_dim is None and self.multiple_of is None:
            raise ValueError("needs hidden_dim, or multiple_of (and optionally dim_multiplier) for the LLaMA rule")
        return self

    @property
    def act(self) -> str:
        """The activation's runtime name (silu, gelu, gelu_tanh, relu): the `activation` field
        where the kind has one, else its one activation."""
        return getattr(self, "activation", self.activations[0])

    def _rule(self, dim: int) -> int:
        """The LLaMA rule: h = int(2*4*dim/3), h = int(m*h), rounded up to a multiple."""
        assert self.multiple_of is not None
        h = int(2 * 4 * dim / 3)
        if self.dim_multiplier is not None:
            h = int(self.dim_multiplier * h)
        return self.multiple_of * ((h + self.multiple_of - 1) // self.multiple_of)

    def size_problem(self, dim: int) -> str | None:
        """Why the LLaMA rule gives no usable size in a stream `dim` wide (None: it does)."""
        if self.hidden_dim is not None:
            return None
        h = self._rule(dim)
        if h < 1:
            return f"the LLaMA rule gives {h} hidden units (dim {dim}, dim_multiplier {self.dim_multiplier})"
        if h > MAX_WIDTH:
            return f"the LLaMA rule gives {h:,} hidden units, more than {MAX_WIDTH:,}"
        return None

    def sized(self, dim: int) -> "DenseFFN":
        """hidden_dim filled by the LLaMA rule (when not given)."""
        if self.hidden_dim is not None:
            return self
        return self.model_copy(update={"hidden_dim": self._rule(dim)})

    def describe(self) -> str:
        act = f" ({self.act})" if hasattr(self, "activation") else ""
        return f"{self.kind_name}{act} {self.hidden_dim}" + (", biases" if self.bias else "")

    @classmethod
    def gated_for(cls, activation: str, **fields: Any) -> "DenseFFN | None":
        """The registered gated FFN kind computing `activation` (silu -> swiglu, gelu -> geglu),
        built with `fields`; None when no kind does."""
        for kind in registry.kinds("ffn").values():
            if issubclass(kind, DenseFFN) and kind.gated and activation in kind.activations:
                extra = {"activation": activation} if "activation" in kind.model_fields else {}
                return kind(**fields, **extra)
        return None

    # ------------------------------------------------------------------ phases
    def ir(self, path: str, ctx: Scope) -> Node:
        assert self.hidden_dim is not None, "size the ffn first"
        dim, hidden = ctx.width, Dim("hidden", self.hidden_dim)
        names = ("gate", "up") if self.gated else ("up",)
        children = [linear_node(join(path, n), dim, hidden, self.bias) for n in names]
        children.append(linear_node(join(path, "down"), hidden, dim, self.bias))
        return Node(self, path, children=children)

    def check(self, node: Node) -> list[Problem]:
        lins = {c.name: c for c in node.children}
        out = []
        if lins["up"].attrs["out"] != lins["down"].attrs["in"]:
            out.append(Problem(node.path, "up output and down input sizes differ"))
        if "gate" in lins and lins["gate"].attrs["out"] != lins["up"].attrs["out"]:
            out.append(Problem(node.path, "gate and up sizes differ"))
        return out

    def kernels(self, node: Node, backend: Any) -> list[KernelRow]:
        return [KernelRow(node.path, self.kind_name, f"{3 if self.gated else 2} matmuls + {self.act}",
                          "matmuls: the linear kernel below")]

    def shard(self, node: Node, tp: int) -> dict[str, Shard]:
        """Hidden units divide among the ranks: gate and up column-parallel, down row-parallel."""
        assert self.hidden_dim is not None
        require_divisible(node.path, "hidden_dim", self.hidden_dim, tp, "hidden units divide among the ranks")
        plan: dict[str, Shard] = {}
        for c in node.children:
            plan.update(linear_shard(c, "rowwise" if c.name == "down" else "colwise"))
        return plan

    def lower(self, node: Node | None = None, backend: Any = None) -> Build:
        return Build.of(GatedFFN if self.gated else MLP, hidden_dim=self.hidden_dim, activation=self.act,
                        bias=self.bias)


@register
class SwiGLU(DenseFFN):
    """w2(silu(w1 x) * w3 x), as in LLaMA."""

    gated = True
    activations = ("silu",)
    kind: Literal["swiglu"] = "swiglu"


@register
class GeGLU(DenseFFN):
    """w2(gelu(w1 x) * w3 x)."""

    gated = True
    activations = ("gelu", "gelu_tanh")
    kind: Literal["geglu"] = "geglu"
    activation: Literal["gelu", "gelu_tanh"] = "gelu"


@register
class GeluMLP(DenseFFN):
    """w2(act(w1 x)): the classic two-layer MLP."""

    gated = False
    activations = ("gelu", "gelu_tanh", "relu", "silu")
    kind: Literal["gelu-mlp"] = "gelu-mlp"
    activation: Literal["gelu", "gelu_tanh", "relu", "silu"] = "gelu"
    bias: bool = True
