"""A transformer block: its effective components (a stack's defaults with the layer's
overrides applied, sizes derived) and its layout (where the norms sit: `layout.py`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from ...runtime.modules.decoder import BlockConfig
from ..ir import Node, Scope, join
from ..registry import Kind, Slot, register
from .layout import PreNorm


@register
class Block(Kind):
    slots = ("block",)
    kind: Literal["block"] = "block"
    fsdp_unit = True
    attention: Annotated[Kind, Slot("attention", default="attention")]
    ffn: Annotated[Kind, Slot("ffn")]
    norm: Annotated[Kind, Slot("norm")]
    layout: Annotated[Kind, Slot("layout", default="pre-norm")] = Field(default_factory=PreNorm)

    def ir(self, path: str, ctx: Scope) -> Node:
        norms = [self.norm.ir(join(path, name), ctx) for name in self.layout.norms()]  # type: ignore[attr-defined]
        return Node(self, path, children=[*norms, self.attention.ir(join(path, "attn"), ctx),
                                          self.ffn.ir(join(path, "ffn"), ctx)])

    def lower(self, node: Node | None = None, backend: Any = None) -> BlockConfig:
        return BlockConfig(self.attention.lower(), self.ffn.lower(), self.norm.lower(), self.layout.lower())
