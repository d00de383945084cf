"""Position encodings: rotary embeddings over a sequence (1-D, with optional scaling) and over
an image's patch grid (2-D). Both rotate q and k in the half-split layout."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from ...runtime.modules.rope import RopeConfig
from .. import registry
from ..registry import KernelRow, Kind, Slot, register
from ..values import Number


@register
class LinearScaling(Kind):
    """Position interpolation: positions are divided by `factor` before rotation."""

    slots = ("rope-scaling",)
    kind: Literal["linear"] = "linear"
    factor: Number(gt=0, le=1e6)

    def describe(self) -> str:
        return f"linear scaling x{self.factor:g}"

    def runtime_factor(self) -> float:
        return self.factor

    # transformers: rope_parameters / rope_scaling {"rope_type": "linear", "factor": f}
    hf_rope_type: ClassVar[str] = "linear"

    def hf_params(self) -> dict[str, Any]:
        return {"rope_type": self.hf_rope_type, "factor": self.factor}

    @classmethod
    def from_hf_params(cls, params: dict[str, Any]) -> "LinearScaling":
        return cls(factor=float(params["factor"]))


@register
class Rope(Kind):
    """1-D rotary embedding over the whole head (half-split layout internally)."""

    slots = ("position",)
    axes: ClassVar[int] = 1
    kind: Literal["rope"] = "rope"
    theta: Number(gt=0, le=1e15) = 10000.0
    scaling: Annotated[Kind | None, Slot("rope-scaling", default="linear")] = None

    def describe(self) -> str:
        return f"RoPE theta {self.theta:g}" + (f", {self.scaling.describe()}" if self.scaling else "")

    def row(self, path: str, grid: int | None = None) -> KernelRow:
        why = f"theta={self.theta:g}" + (f", {self.scaling.describe()}" if self.scaling else "")
        return KernelRow(path, self.kind_name, "half-split rotate (cos/sin tables per forward)", why)

    def hf_config(self) -> dict[str, Any]:
        """transformers' keys: `rope_parameters` (v5) and `rope_theta`/`rope_scaling` (v4)."""
        scaling = self.scaling.hf_params() if self.scaling else None  # type: ignore[attr-defined]
        params = {**(scaling or {"rope_type": "default"}), "rope_theta": self.theta}
        return {"rope_parameters": params, "rope_theta": self.theta, "rope_scaling": scaling}

    @classmethod
    def from_hf_config(cls, cfg: dict[str, Any]) -> "Rope":
        """From a config.json's rope keys (either major version); the scaling kind is the
        registered one whose `hf_rope_type` the config names (ValueError if none is)."""
        params = cfg.get("rope_parameters") or {}
        theta = float(params.get("rope_theta", cfg.get("rope_theta", 10000.0)))
        scaling = cfg.get("rope_scaling") or (params if params.get("rope_type", "default") != "default" else None)
        if not scaling:
            return cls(theta=theta)
        rope_type = scaling.get("rope_type", scaling.get("type"))
        for kind in registry.kinds("rope-scaling").values():
            if getattr(kind, "hf_rope_type", None) == rope_type:
                return cls(theta=theta, scaling=kind.from_hf_params(scaling))  # type: ignore[attr-defined]
        known = ", ".join(getattr(k, "hf_rope_type", "?") for k in registry.kinds("rope-scaling").values())
        raise ValueError(f"RoPE scaling {rope_type!r} is not supported (known: {known})")

    def runtime(self) -> RopeConfig | None:
        """What the attention module rotates with (None: applied outside it)."""
        return RopeConfig(theta=self.theta, scaling_factor=self.scaling.runtime_factor() if self.scaling else None)  # type: ignore[attr-defined]


@register
class Rope2D(Kind):
    """Axial 2-D rotary embedding over the patch grid (Pixtral): of a head's frequencies
    1/theta^(2i/head_dim), the even-indexed rotate by the patch's row, the odd-indexed by its
    column (half-split layout: rows take pairs 0..head_dim/4-1, columns the rest). The encoder
    builds the tables once per call for all its blocks."""

    slots = ("position",)
    axes: ClassVar[int] = 2
    kind: Literal["rope-2d"] = "rope-2d"
    theta: Number(gt=0, le=1e15) = 10000.0

    def describe(self) -> str:
        return f"2-D RoPE theta {self.theta:g}"

    def row(self, path: str, grid: int | None = None) -> KernelRow:
        return KernelRow(path, self.kind_name, "half-split rotate, cos/sin per patch (row, column)",
                         f"theta={self.theta:g}" + (f", grid up to {grid}x{grid}" if grid else ""))

    def runtime(self) -> RopeConfig | None:
        return None
