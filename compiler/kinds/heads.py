"""Output heads: the ordinary next-token head, and multi-token prediction's n future-token
heads (Gloeckle et al. 2024). A heads kind says how many of the decoder's layers are head
blocks (named heads.j) and which runtime model runs them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ...runtime.modules.decoder import CausalLM
from ...runtime.modules.multi_token import MultiTokenLM
from ..registry import Kind, register
from ..values import Size


@register
class NextTokenHead(Kind):
    """The output matrix over the last block: predicts token t+1."""

    slots = ("heads",)
    kind: Literal["next_token"] = "next_token"

    @property
    def head_blocks(self) -> int:
        return 0

    def summary(self, n_layers: int) -> list[tuple[str, str]]:
        return []

    def runtime_model(self) -> type[Any]:
        return CausalLM


@register
class MultiTokenHead(Kind):
    """n future-token heads (Gloeckle et al. 2024): the last n of n_layers blocks become heads,
    each applied to the trunk's output; head i predicts token t+i+1. Norm and output are shared."""

    slots = ("heads",)
    kind: Literal["multi_token"] = "multi_token"
    n_future: Size(64) = Field(description="number of heads (tokens predicted per position)")

    @property
    def head_blocks(self) -> int:
        return self.n_future

    def summary(self, n_layers: int) -> list[tuple[str, str]]:
        n = self.n_future
        return [("heads", f"{n} future-token heads (trunk {n_layers - n} blocks + {n} head blocks)")]

    def too_few_layers(self, n_layers: int) -> tuple[tuple[str, ...], str]:
        return ("n_future",), (f"{self.n_future} heads need at least that many layers (n_layers is {n_layers}; "
                               "heads are the last blocks)")

    def runtime_model(self) -> type[Any]:
        return MultiTokenLM
