"""Position encodings: rotary embeddings over a sequence (1-D, with optional scaling and partial
rotary) and over an image's patch grid (2-D). Both rotate q and k in the half-split layout.

A RoPE scaling kind (slot `rope-scaling`) is one of transformers' `rope_type`s. Each owns its
piece of `config.json` (`hf_rope_type`, `hf_params()`, `from_hf_params(params, config)`, the
config being the whole config.json, for the keys transformers reads outside `rope_parameters`)
and lowers to the runtime dataclass that computes its frequencies (runtime/modules/rope.py).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Mapping

from pydantic import BeforeValidator, Field, model_validator

from ...runtime.modules import rope as rt
from .. import registry
from ..registry import FieldError, KernelRow, Kind, Slot, register
from ..values import MAX_CONTEXT, Number, Size

Factor = Number(gt=0, le=1e6)
Context = Size(MAX_CONTEXT)


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


#: a LongRoPE factor list: finite positive numbers, one per rotated frequency (Field bounds it)
Factors = Annotated[tuple[Factor, ...], Field(min_length=1, max_length=1 << 16), BeforeValidator(_tuple)]


def _original(params: Mapping[str, Any], config: Mapping[str, Any] | None) -> int:
    """transformers' original_max_position_embeddings for llama3/yarn/longrope: a top-level
    config key wins (Phi-3 keeps it there), then rope_parameters', then max_position_embeddings."""
    config = config or {}
    if config.get("original_max_position_embeddings") is not None:
        return config["original_max_position_embeddings"]
    if params.get("original_max_position_embeddings") is not None:
        return params["original_max_position_embeddings"]
    return config["max_position_embeddings"]


def _first_set(*values: Any) -> Any:
    return next(v for v in values if v is not None)


@register
class LinearScaling(Kind):
    """Position interpolation: positions are divided by `factor` before rotation."""

    slots = ("rope-scaling",)
    kind: Literal["linear"] = "linear"
    factor: Factor

    def describe(self) -> str:
        return f"linear scaling x{self.factor:g}"

    def runtime(self) -> rt.RopeScaling:
        return rt.LinearRope(self.factor)

    # transformers: rope_parameters / rope_scaling {"rope_type": "linear", "factor": f}
    hf_rope_type: ClassVar[str] = "linear"

    def hf_params(self) -> dict[str, Any]:
        return {"rope_type": self.hf_rope_type, "factor": self.factor}

    @classmethod
    def from_hf_params(cls, params: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> "LinearScaling":
        return cls(factor=params["factor"])


@register
class DynamicScaling(Kind):
    """NTK-aware dynamic scaling (Reddit's /u/emozilla): within `original_max_position_embeddings`
    positions plain RoPE; past it theta grows with the sequence length n, to
    theta * (factor n / original - (factor - 1))^(d / (d - 2)). transformers takes the original
    length from its config's max_position_embeddings, so a spec whose context differs from it has
    no transformers config (the export's read-back check says so)."""

    slots = ("rope-scaling",)
    kind: Literal["dynamic"] = "dynamic"
    factor: Factor
    original_max_position_embeddings: Context

    def describe(self) -> str:
        return f"dynamic NTK scaling x{self.factor:g} past {self.original_max_position_embeddings:,} positions"

    def runtime(self) -> rt.RopeScaling:
        return rt.DynamicNTKRope(self.factor, self.original_max_position_embeddings)

    hf_rope_type: ClassVar[str] = "dynamic"

    def hf_params(self) -> dict[str, Any]:
        return {"rope_type": self.hf_rope_type, "factor": self.factor}

    @classmethod
    def from_hf_params(cls, params: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> "DynamicScaling":
        return cls(factor=params["factor"], original_max_position_embeddings=(config or {})["max_position_embeddings"])


@register
class Llama3Scaling(Kind):
    """Llama 3.1's frequency-dependent scaling: wavelengths over original/low_freq_factor are
    divided by `factor`, those under original/high_freq_factor kept, a smooth blend between."""

    slots = ("rope-scaling",)
    kind: Literal["llama3"] = "llama3"
    factor: Factor
    low_freq_factor: Factor = 1.0
    high_freq_factor: Factor = 4.0
    original_max_position_embeddings: Context

    @model_validator(mode="after")
    def _bands(self) -> "Llama3Scaling":
        if self.high_freq_factor <= self.low_freq_factor:
            raise FieldError(("high_freq_factor",), f"must exceed low_freq_factor ({self.low_freq_factor:g}), "
                                                    f"got {self.high_freq_factor:g}")
        return self

    def describe(self) -> str:
        return (f"llama3 scaling x{self.factor:g} (low {self.low_freq_factor:g}, high {self.high_freq_factor:g}, "
                f"original {self.original_max_position_embeddings:,})")

    def runtime(self) -> rt.RopeScaling:
        return rt.Llama3Rope(self.factor, self.low_freq_factor, self.high_freq_factor,
                             self.original_max_position_embeddings)

    hf_rope_type: ClassVar[str] = "llama3"

    def hf_params(self) -> dict[str, Any]:
        return {"rope_type": self.hf_rope_type, "factor": self.factor, "low_freq_factor": self.low_freq_factor,
                "high_freq_factor": self.high_freq_factor,
                "original_max_position_embeddings": self.original_max_position_embeddings}

    @classmethod
    def from_hf_params(cls, params: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> "Llama3Scaling":
        return cls(factor=params["factor"], low_freq_factor=params["low_freq_factor"],
                   high_freq_factor=params["high_freq_factor"],
                   original_max_position_embeddings=_original(params, config))


@register
class YarnScaling(Kind):
    """YaRN (Peng et al. 2023): frequencies turning fewer than `beta_slow` times over the original
    context are interpolated (divided by `factor`), more than `beta_fast` times kept, a linear
    ramp between; cos/sin are scaled by `attention_factor`, by default 0.1 ln(factor) + 1, or
    with `mscale` and `mscale_all_dim` (DeepSeek) the ratio of two such terms."""

    slots = ("rope-scaling",)
    kind: Literal["yarn"] = "yarn"
    factor: Factor
    original_max_position_embeddings: Context
    beta_fast: Factor = 32.0
    beta_slow: Factor = 1.0
    attention_factor: Factor | None = None
    mscale: Number(ge=0, le=1e3) | None = None
    mscale_all_dim: Number(ge=0, le=1e3) | None = None
    truncate: bool = Field(True, description="round the ramp's ends outwards to whole dimensions")

    def describe(self) -> str:
        return (f"YaRN x{self.factor:g} from {self.original_max_position_embeddings:,} "
                f"(beta {self.beta_fast:g}/{self.beta_slow:g}, attention x{self.runtime().attention_scaling:.4g})")

    def runtime(self) -> rt.RopeScaling:
        return rt.YarnRope(self.factor, self.original_max_position_embeddings, self.beta_fast, self.beta_slow,
                           self.attention_factor, self.mscale, self.mscale_all_dim, self.truncate)

    hf_rope_type: ClassVar[str] = "yarn"
    _OPTIONAL: ClassVar[tuple[str, ...]] = ("attention_factor", "mscale", "mscale_all_dim")

    def hf_params(self) -> dict[str, Any]:
        out = {"rope_type": self.hf_rope_type, "factor": self.factor, "beta_fast": self.beta_fast,
               "beta_slow": self.beta_slow, "original_max_position_embeddings": self.original_max_position_embeddings}
        out |= {k: getattr(self, k) for k in self._OPTIONAL if getattr(self, k) is not None}
        return out | ({} if self.truncate else {"truncate": False})

    @classmethod
    def from_hf_params(cls, params: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> "YarnScaling":
        original = _original(params, config)
        factor = params.get("factor")
        if factor is None:  # DeepSeek: the ratio of the two context lengths
            factor = (config or {})["max_position_embeddings"] / original
        return cls(factor=factor, original_max_position_embeddings=original,
                   beta_fast=params.get("beta_fast") or 32.0, beta_slow=params.get("beta_slow") or 1.0,
                   truncate=params.get("truncate", True), **{k: params.get(k) for k in cls._OPTIONAL})


@register
class LongRopeScaling(Kind):
    """LongRoPE (Phi-3): per-frequency divisors, `short_factor` while a call's sequence fits in
    `original_max_position_embeddings` and `long_factor` once it is longer; cos/sin scaled by
    `attention_factor`, by default sqrt(1 + ln(factor) / ln(original)). Each list has one entry
    per rotated frequency (rotary dims / 2)."""

    slots = ("rope-scaling",)
    kind: Literal["longrope"] = "longrope"
    short_factor: Factors
    long_factor: Factors
    original_max_position_embeddings: Context
    factor: Factor | None = Field(None, description="the context extension; sets the default attention_factor")
    attention_factor: Factor | None = None

    @model_validator(mode="after")
    def _lists(self) -> "LongRopeScaling":
        if len(self.short_factor) != len(self.long_factor):
            raise FieldError(("long_factor",), f"{len(self.long_factor)} entries, short_factor has "
                                               f"{len(self.short_factor)}")
        if self.factor is None and self.attention_factor is None:
            raise FieldError(("factor",), "give factor (the context extension) or attention_factor")
        return self

    def rotary_problems(self, dim: int) -> list[str]:
        """Why heads rotating `dim` dims cannot take these lists (one factor per frequency)."""
        n = len(self.short_factor)
        return [] if n == dim // 2 else [f"longrope has {n} factors per list; the heads rotate {dim} dims, "
                                         f"{dim // 2} frequencies"]

    def describe(self) -> str:
        return (f"LongRoPE from {self.original_max_position_embeddings:,} ({len(self.short_factor)} short/long factors, "
                f"attention x{self.runtime().attention_scaling:.4g})")

    def runtime(self) -> rt.RopeScaling:
        return rt.LongRope(self.short_factor, self.long_factor, self.original_max_position_embeddings, self.factor,
                           self.attention_factor)

    hf_rope_type: ClassVar[str] = "longrope"

    def hf_params(self) -> dict[str, Any]:
        out = {"rope_type": self.hf_rope_type, "short_factor": list(self.short_factor),
               "long_factor": list(self.long_factor),
               "original_max_position_embeddings": self.original_max_position_embeddings}
        return out | {k: getattr(self, k) for k in ("factor", "attention_factor") if getattr(self, k) is not None}

    @classmethod
    def from_hf_params(cls, params: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> "LongRopeScaling":
        original = _original(params, config)
        factor, attention = params.get("factor"), params.get("attention_factor")
        if factor is None and attention is None:  # Phi-3: the ratio of the two context lengths
            factor = (config or {})["max_position_embeddings"] / original
        return cls(short_factor=params["short_factor"], long_factor=params["long_factor"],
                   original_max_position_embeddings=original, factor=factor, attention_factor=attention)


@register
class Rope(Kind):
    """1-D rotary embedding (half-split layout internally) over the first `fraction` of each head."""

    slots = ("position",)
    axes: ClassVar[int] = 1
    kind: Literal["rope"] = "rope"
    theta: Number(gt=0, le=1e15) = 10000.0
    scaling: Annotated[Kind | None, Slot("rope-scaling", default="linear")] = None
    fraction: Number(gt=0, le=1) = Field(1.0, description="partial rotary: the first int(head_dim * fraction) "
                                                          "dims of each head rotate, the rest pass through")

    def describe(self) -> str:
        return f"RoPE theta {self.theta:g}" + self._extras()

    def _extras(self) -> str:
        partial = f", {self.fraction:g} of each head" if self.fraction != 1 else ""
        return partial + (f", {self.scaling.describe()}" if self.scaling else "")

    def row(self, path: str, grid: int | None = None) -> KernelRow:
        return KernelRow(path, self.kind_name, "half-split rotate (cos/sin tables per forward)",
                         f"theta={self.theta:g}" + self._extras())

    def head_problems(self, head_dim: int) -> list[str]:
        """What a head `head_dim` wide cannot rotate this way (the attention kind asks)."""
        dim = int(head_dim * self.fraction)
        if dim == 0 or dim % 2:
            return [f"partial rotary: int(head_dim {head_dim} x fraction {self.fraction:g}) = {dim} rotary dims; "
                    "the half-split layout needs an even, nonzero number"]
        scaling_problems = getattr(self.scaling, "rotary_problems", None)  # a scaling kind with per-frequency data
        return scaling_problems(dim) if scaling_problems else []

    def hf_config(self) -> dict[str, Any]:
        """transformers' keys: `rope_parameters` (v5) and `rope_theta`/`rope_scaling` (v4), and
        `partial_rotary_factor` (in rope_parameters, and top-level for v4) when not 1."""
        scaling = self.scaling.hf_params() if self.scaling else None  # type: ignore[attr-defined]
        partial = {"partial_rotary_factor": self.fraction} if self.fraction != 1 else {}
        params = {**(scaling or {"rope_type": "default"}), "rope_theta": self.theta, **partial}
        return {"rope_parameters": params, "rope_theta": self.theta, "rope_scaling": scaling, **partial}

    @classmethod
    def from_hf_config(cls, cfg: dict[str, Any]) -> "Rope":
        """From a config.json's rope keys (either major version); the scaling kind is the
        registered one whose `hf_rope_type` the config names (ValueError if none is)."""
        params = cfg.get("rope_parameters") or {}
        theta = params.get("rope_theta", cfg.get("rope_theta", 10000.0))
        fraction = _first_set(params.get("partial_rotary_factor"), cfg.get("partial_rotary_factor"), 1.0)
        scaling = cfg.get("rope_scaling") or (params if params.get("rope_type", "default") != "default" else None)
        if not scaling:
            return cls(theta=theta, fraction=fraction)
        rope_type = scaling.get("rope_type", scaling.get("type"))
        for kind in registry.kinds("rope-scaling").values():
            if getattr(kind, "hf_rope_type", None) == rope_type:
                return cls(theta=theta, fraction=fraction, scaling=kind.from_hf_params(scaling, cfg))  # type: ignore[attr-defined]
        known = ", ".join(getattr(k, "hf_rope_type", "?") for k in registry.kinds("rope-scaling").values())
        raise ValueError(f"RoPE scaling {rope_type!r} is not supported (known: {known})")

    def runtime(self) -> rt.RopeConfig | None:
        """What the attention module rotates with (None: applied outside it)."""
        return rt.RopeConfig(self.theta, self.scaling.runtime() if self.scaling else None, self.fraction)  # type: ignore[attr-defined]


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

    def head_problems(self, head_dim: int) -> list[str]:
        return []

    def runtime(self) -> rt.RopeConfig | None:
        return None
