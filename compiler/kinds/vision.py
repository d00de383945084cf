"""The vision side of a vision-language model (Pixtral): a ViT encoder over image patches and
the adapter into the text model's width. Both run once per image patch, not per generated
token: their parameters count, their FLOPs and caches do not (accounting)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from ...runtime.modules.multimodal import AdapterConfig
from ...runtime.modules.vision import VisionEncoderConfig
from ..ir import Dim, Node, Param, Scope, join
from ..registry import Cost, FieldError, KernelRow, Kind, Slot, register
from ..values import MAX_LAYERS, Size, Width
from .attention import Attention
from .block import Block
from .norm import RMSNorm
from .ops import linear_node


@register
class VisionEncoder(Kind):
    """A ViT for images of any size up to image_size: patch Conv2d → ln_pre → pre-norm blocks
    (2-D RoPE, block-diagonal attention across the images of one call); no final norm."""

    slots = ("vision",)
    part = "vision"
    kind: Literal["vision-encoder"] = "vision-encoder"
    dim: Width
    n_layers: Size(MAX_LAYERS)
    image_size: Size(1 << 16) = Field(description="largest image side in pixels: the RoPE grid is image_size/patch_size")
    patch_size: Size(1024) = 16
    channels: Size(64) = 3
    patch_bias: bool = False
    attention: Attention = Field(description="bidirectional within each image; rope is a 2-D position kind")
    ffn: Annotated[Kind, Slot("ffn")]
    norm: Annotated[Kind, Slot("norm")] = Field(default_factory=RMSNorm, description="ln_pre and the blocks' norms")

    @model_validator(mode="before")
    @classmethod
    def _patch_rope(cls, data: Any) -> Any:
        """An encoder's attention rotates over the patch grid: `rope:` left out, or written
        without a kind, is the 2-D rotary embedding."""
        if isinstance(data, dict) and isinstance(data.get("attention"), dict):
            attn = dict(data["attention"])
            rope = attn.get("rope", {})
            if isinstance(rope, dict) and "kind" not in rope:
                attn["rope"] = {"kind": "rope-2d", **rope}
                data = {**data, "attention": attn}
        return data

    @model_validator(mode="after")
    def _check(self) -> "VisionEncoder":
        if self.image_size % self.patch_size:
            raise FieldError(("image_size",), f"image_size ({self.image_size}) is not a multiple of patch_size "
                                              f"({self.patch_size})")
        a = self.attention
        if a.rope is None or getattr(a.rope, "axes", 1) != 2:
            raise FieldError(("attention", "rope"), "a vision encoder rotates over the patch grid: give a 2-D "
                                                    "position kind (kind: rope-2d)")
        if a.sliding_window is not None or (a.n_kv_heads or a.n_heads) != a.n_heads:
            raise FieldError(("attention",), "a vision encoder's attention has no sliding window and one kv head "
                                             "per head")
        if a.head_dim is None and self.dim % a.n_heads:
            raise FieldError(("attention",), f"dim ({self.dim}) is not divisible by n_heads ({a.n_heads}); "
                                             "give head_dim")
        why = self.ffn.size_problem(self.dim)  # type: ignore[attr-defined]
        if why:
            raise FieldError(("ffn",), why)
        if self.head_dim % 4:
            raise FieldError(("attention", "head_dim"), f"2-D RoPE needs head_dim divisible by 4, got {self.head_dim}")
        return self

    @property
    def head_dim(self) -> int:
        return self.attention.head_dim or self.dim // self.attention.n_heads

    @property
    def grid(self) -> int:
        """Patches per side of the largest image."""
        return self.image_size // self.patch_size

    def describe(self) -> str:
        blk = self.block()
        return (f"dim {self.dim}, {self.n_layers} layers, {blk.attention.describe()}, {blk.ffn.describe()}, patch "
                f"{self.patch_size}, {self.attention.rope.describe()} over {self.grid}x{self.grid} patches "  # type: ignore[union-attr]
                f"(images up to {self.image_size}px)")

    def block(self) -> Block:
        """Every layer's components, sizes derived."""
        return Block(attention=self.attention.completed(self.dim), ffn=self.ffn.sized(self.dim),  # type: ignore[attr-defined]
                     norm=self.norm)

    # ------------------------------------------------------------------ phases
    def ir(self, path: str, ctx: Any = None) -> Node:
        dim, patch = Dim("vision_dim", self.dim), Dim("patch", self.patch_size)
        params = [Param("patch_conv.weight", (dim, Dim("channels", self.channels), patch, patch))]
        if self.patch_bias:
            params.append(Param("patch_conv.bias", (dim,), "zeros"))
        scope = Scope(dim, causal=False, grid=self.grid)
        blk = self.block()
        blocks = [blk.ir(join(path, f"blocks.{i}"), scope) for i in range(self.n_layers)]
        return Node(self, path, params, [self.norm.ir(join(path, "ln_pre"), scope), *blocks],
                    attrs={"blocks": blocks})

    def cost(self, node: Node, ctx: Any, inner: Cost) -> Cost:
        """Parameters only: the encoder runs per image patch, not per token, and keeps no cache."""
        return Cost({"": inner.total + sum(p.numel for p in node.params)})

    def kernels(self, node: Node, backend: Any) -> list[KernelRow]:
        p = self.patch_size
        return [KernelRow(join(node.path, "patch_conv"), "patch_embed", f"conv2d {p}x{p} stride {p}, one per image",
                          f"images of any size up to {self.image_size}px, sides multiples of {p}")]

    def lower(self, node: Node, backend: Any = None) -> VisionEncoderConfig:
        blocks = tuple(b.spec.lower(b) for b in node.attrs["blocks"])
        return VisionEncoderConfig(self.dim, self.patch_size, self.grid, blocks, self.norm.lower(),
                                   self.attention.rope.theta, self.channels, self.patch_bias)  # type: ignore[union-attr]


@register
class MLPAdapter(Kind):
    """Vision features into the text model's width: w_out(act(w_in x))."""

    slots = ("adapter",)
    part = "adapter"
    kind: Literal["mlp"] = "mlp"
    hidden_dim: Width | None = Field(None, description="defaults to the text model's dim")
    activation: Literal["gelu", "gelu_tanh", "relu", "silu"] = "gelu"
    bias: bool = True

    def describe(self) -> str:
        return f"{self.kind_name} {self.hidden_dim or 'text dim'}, {self.activation}" + (", biases" if self.bias else "")

    def ir(self, path: str, ctx: tuple[Dim, Dim]) -> Node:
        """`ctx`: (vision width, text width)."""
        d_in, d_out = ctx
        hid = Dim("adapter_hidden", self.hidden_dim or d_out.size)
        return Node(self, path, children=[linear_node(join(path, "w_in"), d_in, hid, self.bias),
                                          linear_node(join(path, "w_out"), hid, d_out, self.bias)],
                    attrs={"in": d_in, "out": d_out})

    def cost(self, node: Node, ctx: Any, inner: Cost) -> Cost:
        return Cost({"": inner.total})  # once per image patch, not per token

    def kernels(self, node: Node, backend: Any) -> list[KernelRow]:
        return [KernelRow(node.path, "adapter", f"2 matmuls + {self.activation}" + (" (biases)" if self.bias else ""),
                          f"vision width {node.attrs['in'].size} -> text width {node.attrs['out'].size}; features "
                          "replace [IMG] tokens")]

    def lower(self, node: Node, backend: Any = None) -> AdapterConfig:
        d_in, d_out = node.attrs["in"].size, node.attrs["out"].size
        return AdapterConfig(d_in, self.hidden_dim or d_out, d_out, self.activation, self.bias)
