"""Normalization kinds."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ...runtime.modules.build import Build
from ...runtime.modules.norm import LayerNorm as LayerNormModule
from ...runtime.modules.norm import (
    NonParametricLayerNorm as NonParametricLayerNormModule,
)
from ...runtime.modules.norm import RMSNorm as RMSNormModule
from ..ir import Node, Param, Scope
from ..registry import KernelRow, Kind, register
from ..values import Eps


class _Norm(Kind):
    part = "norm"

    def describe(self) -> str:
        return f"{self.kind_name} eps {self.eps:g}"  # type: ignore[attr-defined]

    def ir(self, path: str, ctx: Scope) -> Node:
        return Node(self, path, self.params(ctx))

    def params(self, ctx: Scope) -> list[Param]:
        return [Param("weight", (ctx.width,), "ones")]


@register
class RMSNorm(_Norm):
    """LLaMA's RMSNorm: x / sqrt(mean(x^2) + eps) in float32, cast back, times a weight."""

    slots = ("norm",)
    kind: Literal["rmsnorm"] = "rmsnorm"
    eps: Eps = 1e-5
    unit_offset: bool = Field(False, description="scale by (1 + weight), weights stored as offsets (Gemma)")

    def describe(self) -> str:
        return super().describe() + (", scale 1+w" if self.unit_offset else "")

    def params(self, ctx: Scope) -> list[Param]:
        return [Param("weight", (ctx.width,), "zeros" if self.unit_offset else "ones")]

    def kernels(self, node: Node, backend: Any) -> list[KernelRow]:
        if self.unit_offset:
            return [KernelRow(node.path, self.kind_name, "float32 rsqrt(mean(x^2)+eps) * (1+w), cast back",
                              "Gemma numerics: scale in float32")]
        return [KernelRow(node.path, self.kind_name, "float32 rsqrt(mean(x^2)+eps), cast back",
                          "LLaMA numerics: normalize in float32")]

    def lower(self, node: Node | None = None, backend: Any = None) -> Build:
        return Build.of(RMSNormModule, eps=self.eps, unit_offset=self.unit_offset)


@register
class LayerNorm(_Norm):
    """(x - mean) / sqrt(var + eps) times a weight, plus a bias when `bias`."""

    slots = ("norm",)
    kind: Literal["layernorm"] = "layernorm"
    eps: Eps = 1e-5
    bias: bool = True

    def params(self, ctx: Scope) -> list[Param]:
        return super().params(ctx) + ([Param("bias", (ctx.width,), "zeros")] if self.bias else [])

    def kernels(self, node: Node, backend: Any) -> list[KernelRow]:
        return [KernelRow(node.path, self.kind_name, "torch layer_norm", "fused by PyTorch")]

    def lower(self, node: Node | None = None, backend: Any = None) -> Build:
        return Build.of(LayerNormModule, eps=self.eps, bias=self.bias)


@register
class NonParametricLayerNorm(_Norm):
    """LayerNorm with no weight and no bias (OLMo): (x - mean) / sqrt(var + eps), computed in
    float32 and cast back."""

    slots = ("norm",)
    kind: Literal["nonparametric-layernorm"] = "nonparametric-layernorm"
    eps: Eps = 1e-5

    def params(self, ctx: Scope) -> list[Param]:
        return []

    def kernels(self, node: Node, backend: Any) -> list[KernelRow]:
        return [KernelRow(node.path, self.kind_name, "torch layer_norm in float32, no weight or bias",
                          "OLMo's non-parametric norm")]

    def lower(self, node: Node | None = None, backend: Any = None) -> Build:
        return Build.of(NonParametricLayerNormModule, eps=self.eps)
