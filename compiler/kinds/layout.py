"""Block layouts: where a block's norms sit and how its two sublayers meet the residual
stream. A decoder's `layout:` picks one for every block (default `pre-norm`, LLaMA's)."""

from __future__ import annotations

from typing import Any, Literal

from ...runtime.modules.blocks import ParallelBlock, PostNormBlock, SandwichBlock
from ...runtime.modules.build import Build
from ..registry import Kind, register


class Layout(Kind):
    slots = ("layout",)

    def norms(self) -> tuple[str, ...]:
        """The names of the block's norm nodes (each of the stack's norm kind)."""
        raise NotImplementedError

    def lower(self, node: Any = None, backend: Any = None) -> Build | None:
        """The runtime block module (None: the plain pre-norm Block)."""
        raise NotImplementedError


@register
class PreNorm(Layout):
    """h = x + attn(attn_norm(x)); out = h + ffn(ffn_norm(h)) (LLaMA, Mistral, Qwen …)."""

    kind: Literal["pre-norm"] = "pre-norm"

    def norms(self) -> tuple[str, ...]:
        return ("attn_norm", "ffn_norm")

    def lower(self, node: Any = None, backend: Any = None) -> Build | None:
        return None


@register
class Sandwich(Layout):
    """A norm before and after each sublayer (Gemma-2/3):
    h = x + post_attn_norm(attn(attn_norm(x))); out = h + post_ffn_norm(ffn(ffn_norm(h)))."""

    kind: Literal["sandwich"] = "sandwich"

    def norms(self) -> tuple[str, ...]:
        return ("attn_norm", "post_attn_norm", "ffn_norm", "post_ffn_norm")

    def lower(self, node: Any = None, backend: Any = None) -> Build | None:
        return Build.of(SandwichBlock)


@register
class PostNorm(Layout):
    """Norms on the sublayers' outputs only (OLMo-2):
    h = x + post_attn_norm(attn(x)); out = h + post_ffn_norm(ffn(h))."""

    kind: Literal["post-norm"] = "post-norm"

    def norms(self) -> tuple[str, ...]:
        return ("post_attn_norm", "post_ffn_norm")

    def lower(self, node: Any = None, backend: Any = None) -> Build | None:
        return Build.of(PostNormBlock)


@register
class Parallel(Layout):
    """Attention and FFN both read the block's input (GPT-NeoX/Pythia):
    out = x + attn(attn_norm(x)) + ffn(ffn_norm(x)); with `shared_norm` one norm feeds both
    (Phi-2, Falcon)."""

    kind: Literal["parallel"] = "parallel"
    shared_norm: bool = False

    def norms(self) -> tuple[str, ...]:
        return ("attn_norm",) if self.shared_norm else ("attn_norm", "ffn_norm")

    def describe(self) -> str:
        return "parallel (one norm)" if self.shared_norm else "parallel"

    def lower(self, node: Any = None, backend: Any = None) -> Build | None:
        return Build.of(ParallelBlock, shared_norm=self.shared_norm)
