"""Multi-head attention: GQA when n_kv_heads < n_heads, MQA when n_kv_heads == 1; causal in a
decoder, bidirectional within each image in a vision encoder (the scope says which)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from ...runtime.modules.attention import AttentionConfig
from ..errors import Problem, SpecError
from ..ir import Dim, Node, Scope, join
from ..registry import Cost, FieldError, KernelRow, Kind, Shard, Slot, register
from ..values import MAX_CONTEXT, MAX_HEADS, Number, Size
from .norm import RMSNorm
from .ops import linear_node, linear_shard, require_divisible
from .position import Rope


@register
class PerHeadQKNorm(Kind):
    """q/k normalization per head (Qwen3): `norm` over each head's query and key (head_dim
    wide), after the projections and before RoPE; one weight of head_dim for q, one for k."""

    slots = ("qk-norm",)
    kind: Literal["per-head"] = "per-head"
    norm: Annotated[Kind, Slot("norm")] = Field(default_factory=RMSNorm)

    over_heads: ClassVar[bool] = True  # the runtime normalizes each head (False: the whole projection)

    def describe(self) -> str:
        return f"q/k {self.norm.describe()} per head"

    def widths(self, q_dim: Dim, kv_dim: Dim, head_dim: int) -> tuple[Dim, Dim]:
        """How wide the q norm and the k norm are."""
        return Dim("head_dim", head_dim), Dim("head_dim", head_dim)

    def ir(self, path: str, ctx: Scope) -> Node:
        return self.norm.ir(path, ctx)

    def lower(self, node: Node | None = None, backend: Any = None) -> Any:
        return self.norm.lower()


@register
class WholeQKNorm(PerHeadQKNorm):
    """q/k normalization over the whole projection (OLMo-2): `norm` over all heads' queries
    (n_heads * head_dim wide) and all keys (n_kv_heads * head_dim), after the projections,
    before the head split and RoPE; one weight of that width for q, one for k."""

    kind: Literal["whole"] = "whole"  # type: ignore[assignment]
    over_heads: ClassVar[bool] = False

    def describe(self) -> str:
        return f"q/k {self.norm.describe()} over the whole projection"

    def widths(self, q_dim: Dim, kv_dim: Dim, head_dim: int) -> tuple[Dim, Dim]:
        return q_dim, kv_dim


@register
class Attention(Kind):
    """Multi-head attention; GQA when n_kv_heads < n_heads, MQA when n_kv_heads == 1."""

    slots = ("attention",)
    part = "attention"
    kind: Literal["attention"] = "attention"
    n_heads: Size(MAX_HEADS)
    n_kv_heads: Size(MAX_HEADS) | None = Field(None, description="defaults to n_heads (MHA)")
    head_dim: Size(MAX_HEADS) | None = Field(None, description="defaults to dim / n_heads")
    qkv_bias: bool = False
    o_bias: bool = False
    sliding_window: Size(MAX_CONTEXT) | None = Field(None, description="keys within this many positions, self included")
    rope: Annotated[Kind | None, Slot("position", default="rope")] = Field(default_factory=Rope)
    qk_norm: Annotated[Kind | None, Slot("qk-norm", default="per-head")] = Field(
        None, description="normalize queries and keys before RoPE (Qwen3: {kind: per-head, norm: {kind: rmsnorm}}; "
                          "OLMo-2: {kind: whole, ...})")
    scale: Number(gt=0, le=1e6) | None = Field(
        None, description="scores times this; defaults to head_dim ** -0.5 (Gemma-2: query_pre_attn_scalar ** -0.5)")
    logit_softcap: Number(gt=0, le=1e6) | None = Field(
        None, description="scores -> cap * tanh(scores / cap) before the mask and softmax (Gemma-2)")

    @model_validator(mode="after")
    def _check(self) -> "Attention":
        kv = self.n_kv_heads or self.n_heads
        if kv > self.n_heads or self.n_heads % kv:
            raise FieldError(("n_kv_heads",), f"n_kv_heads ({kv}) must divide n_heads ({self.n_heads})")
        if self.rope is not None and self.head_dim is not None and self.head_dim % 2:
            raise FieldError(("head_dim",), f"RoPE needs an even head_dim, got {self.head_dim}")
        return self

    # ------------------------------------------------------------------ sizes
    def width_problem(self, dim: int) -> str | None:
        """Why this attention cannot sit in a stream `dim` wide (None: it can)."""
        if self.head_dim is None:
            if dim % self.n_heads:
                return f"dim ({dim}) is not divisible by n_heads ({self.n_heads}); give head_dim"
            if self.rope is not None and (dim // self.n_heads) % 2:
                return f"RoPE needs an even head_dim, got dim/n_heads = {dim // self.n_heads}"
        return None

    def completed(self, dim: int) -> "Attention":
        """head_dim and n_kv_heads filled in for a stream `dim` wide."""
        why = self.width_problem(dim)
        if why:
            raise ValueError(why)
        return self.model_copy(update={"head_dim": self.head_dim or dim // self.n_heads,
                                       "n_kv_heads": self.n_kv_heads or self.n_heads})

    def describe(self) -> str:
        text = f"{self.n_heads} heads, {self.n_kv_heads or self.n_heads} kv heads, head_dim {self.head_dim}"
        if self.sliding_window:
            text += f", window {self.sliding_window}"
        if self.qkv_bias or self.o_bias:
            text += ", biases " + "/".join(n for n, b in (("qkv", self.qkv_bias), ("o", self.o_bias)) if b)
        if self.qk_norm:
            text += f", {self.qk_norm.describe()}"
        if self.scale is not None:
            text += f", scale {self.scale:g}"
        if self.logit_softcap is not None:
            text += f", scores soft-capped at {self.logit_softcap:g}"
        return text

    # ------------------------------------------------------------------ phases
    def ir(self, path: str, ctx: Scope) -> Node:
        assert self.head_dim is not None and self.n_kv_heads is not None, "complete the attention first"
        dim = ctx.width
        q_dim = Dim("heads*head_dim", self.n_heads * self.head_dim)
        kv_dim = Dim("kv_heads*head_dim", self.n_kv_heads * self.head_dim)
        children = [linear_node(join(path, "q"), dim, q_dim, self.qkv_bias),
                    linear_node(join(path, "k"), dim, kv_dim, self.qkv_bias),
                    linear_node(join(path, "v"), dim, kv_dim, self.qkv_bias),
                    linear_node(join(path, "o"), q_dim, dim, self.o_bias)]
        if self.qk_norm:
            q_width, k_width = self.qk_norm.widths(q_dim, kv_dim, self.head_dim)  # type: ignore[attr-defined]
            children += [self.qk_norm.ir(join(path, "q_norm"), Scope(q_width, ctx.causal, ctx.grid)),
                         self.qk_norm.ir(join(path, "k_norm"), Scope(k_width, ctx.causal, ctx.grid))]
        return Node(self, path, children=children, attrs={"causal": ctx.causal, "grid": ctx.grid})

    def check(self, node: Node) -> list[Problem]:
        q, k, v, o = (node.child(n) for n in "qkvo")
        out = []
        if q.attrs["out"] != o.attrs["in"]:
            out.append(Problem(node.path, "q output and o input sizes differ"))
        if k.attrs["out"] != v.attrs["out"]:
            out.append(Problem(node.path, "k and v sizes differ"))
        if self.rope is not None and self.head_dim % 2:  # type: ignore[operator]
            out.append(Problem(node.path, f"RoPE needs an even head_dim, got {self.head_dim}"))
        if self.logit_softcap is not None and not node.attrs["causal"]:
            out.append(Problem(node.path, "score soft-capping runs in causal attention only; the bidirectional "
                                          "(block-diagonal) kernels take no soft-cap"))
        rope_problems = getattr(self.rope, "head_problems", None)  # partial rotary, per-frequency scaling data
        out += [Problem(node.path, why) for why in rope_problems(self.head_dim)] if rope_problems else []
        return out

    def cost(self, node: Node, ctx: Any, inner: Cost) -> Cost:
        """Scores and the weighted sum: 2 matmuls of (heads*head_dim) x keys per token, keys
        averaged over the context (a window caps them); k and v cached per token."""
        n = ctx.context
        keys = min(n, self.sliding_window) if self.sliding_window else (n + 1) // 2
        flops = 2 * 2 * self.n_heads * self.head_dim * keys  # type: ignore[operator]
        return inner + Cost(flops=flops, kv_elems=2 * self.n_kv_heads * self.head_dim)  # type: ignore[operator]

    def kernels(self, node: Node, backend: Any) -> list[KernelRow]:
        rows = [self.rope.row(join(node.path, "rope"), node.attrs["grid"])] if self.rope else []  # type: ignore[attr-defined]
        if not node.attrs["causal"]:
            return rows + [KernelRow(node.path, self.kind_name, backend.block_diagonal_kernel(),
                                     f"backend {backend.name} (bidirectional; images packed in one sequence "
                                     "attend within themselves)")]
        traits = []
        if self.n_kv_heads != self.n_heads:
            traits.append("MQA" if self.n_kv_heads == 1 else f"GQA {self.n_heads}/{self.n_kv_heads}")
        if self.sliding_window:
            traits.append(f"window {self.sliding_window}")
        if self.logit_softcap is not None:
            traits.append(f"scores soft-capped at {self.logit_softcap:g}: no fused kernel soft-caps")
            return rows + [KernelRow(node.path, self.kind_name, "matmul + soft-cap + mask + softmax (float32) + matmul",
                                     f"every backend ({', '.join(traits)})")]
        why = f"backend {backend.name}" + (f" ({', '.join(traits)})" if traits else "")
        return rows + [KernelRow(node.path, self.kind_name, backend.attention_kernel(), why)]

    def shard(self, node: Node, tp: int) -> dict[str, Shard]:
        """Heads divide among the ranks: q, k, v column-parallel (each rank its n_heads/tp query
        heads and n_kv_heads/tp kv heads, and their KV cache), o row-parallel; per-head q/k norms
        are replicated (their children's kinds say so)."""
        assert self.n_kv_heads is not None
        require_divisible(node.path, "n_heads", self.n_heads, tp, "attention heads divide among the ranks")
        require_divisible(node.path, "n_kv_heads", self.n_kv_heads, tp, "kv heads divide among the ranks")
        if tp > 1 and self.qk_norm is not None and not self.qk_norm.over_heads:  # type: ignore[attr-defined]
            raise SpecError(Problem(join(node.path, "qk_norm"), "a q/k norm over the whole projection needs every "
                                    f"head on one rank; it cannot split across tp ({tp}) ranks"))
        plan: dict[str, Shard] = {}
        for name, style in (("q", "colwise"), ("k", "colwise"), ("v", "colwise"), ("o", "rowwise")):
            plan.update(linear_shard(node.child(name), style))
        return plan

    def lower(self, node: Node | None = None, backend: Any = None) -> AttentionConfig:
        assert self.head_dim is not None and self.n_kv_heads is not None
        return AttentionConfig(self.n_heads, self.n_kv_heads, self.head_dim, self.qkv_bias, self.o_bias,
                               self.sliding_window, self.rope.runtime() if self.rope else None,  # type: ignore[attr-defined]
                               self.qk_norm.lower() if self.qk_norm else None,
                               bool(self.qk_norm) and not self.qk_norm.over_heads,  # type: ignore[attr-defined]
                               self.scale, self.logit_softcap)
