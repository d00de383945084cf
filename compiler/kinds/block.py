"""A transformer block: its effective components (a stack's defaults with the layer's
overrides applied, sizes derived) and their pre-norm wiring,
h = x + attn(attn_norm(x)); out = h + ffn(ffn_norm(h))."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from ...runtime.modules.decoder import BlockConfig
from ..ir import Node, Scope, join
from ..registry import Kind, Slot, register


@register
class Block(Kind):
    slots = ("block",)
    kind: Literal["pre-norm"] = "pre-norm"
    attention: Annotated[Kind, Slot("attention", default="attention")]
    ffn: Annotated[Kind, Slot("ffn")]
    norm: Annotated[Kind, Slot("norm")]

    def ir(self, path: str, ctx: Scope) -> Node:
        return Node(self, path, children=[
            self.norm.ir(join(path, "attn_norm"), ctx),
            self.attention.ir(join(path, "attn"), ctx),
            self.norm.ir(join(path, "ffn_norm"), ctx),
            self.ffn.ir(join(path, "ffn"), ctx),
        ])

    def lower(self, node: Node | None = None, backend: Any = None) -> BlockConfig:
        return BlockConfig(self.attention.lower(), self.ffn.lower(), self.norm.lower())
