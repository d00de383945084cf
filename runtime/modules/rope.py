"""Rotary position embedding, half-split layout (pairs i and i + d/2), with the scaling methods
transformers has (linear, dynamic NTK, Llama 3.1, YaRN, LongRoPE) and partial rotary.

The zoo's canonical layout is the half-split one transformers uses; Meta's interleaved layout
is reached by permuting the q/k rows in the `meta` format, so the kernel stays one.

Every scaling method is a frozen dataclass answering three questions: the inverse frequencies
that depend only on the config (computed once per rotary width and cached), the ones a call
over given positions uses (dynamic NTK and LongRoPE look at the sequence length: the largest
position + 1, the KV cache included, as transformers' `dynamic_rope_update` does), and the
factor cos and sin are multiplied by (YaRN, LongRoPE). The arithmetic follows transformers'
`modeling_rope_utils` step for step, so that float32 results agree to the last bit where they
can. Since that factor is folded into the cos/sin tables, anything that takes the tables (the
fused RoPE kernel, the native decode step) computes it without knowing about scaling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def plain_frequencies(dim: int, theta: float, device: torch.device | None = None) -> torch.Tensor:
    """1 / theta^(2i/dim) for i < dim/2, in float32 (transformers' expression)."""
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim))


def _sequence_length(positions: torch.Tensor) -> torch.Tensor:
    """transformers' `torch.max(position_ids) + 1`: one length for the whole batch, as a tensor
    (no host sync, so static-shape decoding stays one graph)."""
    return positions.max() + 1


@dataclass(frozen=True)
class RopeScaling:
    """No change to the frequencies; the base of the scaling methods."""

    def frequencies(self, dim: int, theta: float) -> torch.Tensor:
        """What depends only on the config, cached per (dim, theta, self)."""
        return plain_frequencies(dim, theta)

    def select(self, cached: torch.Tensor, positions: torch.Tensor, dim: int, theta: float) -> torch.Tensor:
        """The inverse frequencies (dim/2,) for a call over `positions`."""
        return cached

    @property
    def attention_scaling(self) -> float:
        """cos and sin are multiplied by this (so q.k by its square)."""
        return 1.0


@dataclass(frozen=True)
class LinearRope(RopeScaling):
    """Position interpolation: positions divided by `factor` (the frequencies, equivalently)."""

    factor: float

    def frequencies(self, dim: int, theta: float) -> torch.Tensor:
        inv = plain_frequencies(dim, theta)
        inv /= self.factor
        return inv


@dataclass(frozen=True)
class DynamicNTKRope(RopeScaling):
    """NTK-aware dynamic scaling: for a sequence of n > `original` positions, theta grows to
    theta * (factor * n / original - (factor - 1))^(dim / (dim - 2)); up to `original` the
    frequencies are plain. transformers recomputes only when a call's length exceeds the longest
    it has seen (and resets below `original`); this follows the length of each call, which is the
    same for a fresh model and for any growing sequence (prefill, then decoding)."""

    factor: float
    original: int

    def select(self, cached: torch.Tensor, positions: torch.Tensor, dim: int, theta: float) -> torch.Tensor:
        original = torch.tensor(self.original, device=positions.device)
        n = torch.maximum(_sequence_length(positions), original)
        base = theta * ((self.factor * n / self.original) - (self.factor - 1)) ** (dim / (dim - 2))
        grown = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64, device=positions.device).float() / dim))
        return torch.where(n > original, grown, cached)


@dataclass(frozen=True)
class Llama3Rope(RopeScaling):
    """Llama 3.1: wavelengths longer than original/low_freq_factor are divided by `factor`,
    shorter than original/high_freq_factor kept, and those between interpolated smoothly."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original: int

    def frequencies(self, dim: int, theta: float) -> torch.Tensor:
        inv_freq = plain_frequencies(dim, theta)
        low, high, old = self.low_freq_factor, self.high_freq_factor, self.original
        low_freq_wavelen, high_freq_wavelen = old / low, old / high
        wavelen = 2 * math.pi / inv_freq
        inv = torch.where(wavelen > low_freq_wavelen, inv_freq / self.factor, inv_freq)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * inv / self.factor + smooth * inv
        medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        return torch.where(medium, smoothed, inv)


def _mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


@dataclass(frozen=True)
class YarnRope(RopeScaling):
    """YaRN: interpolated (divided by `factor`) frequencies for the dimensions that turn fewer
    than `beta_slow` times over the original context, extrapolated (plain) ones for more than
    `beta_fast`, a linear ramp between; cos/sin scaled by `attention_factor`, by default
    0.1 ln(factor) + 1 (or DeepSeek's ratio of two such terms with `mscale`/`mscale_all_dim`)."""

    factor: float
    original: int
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    attention_factor: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None
    truncate: bool = True

    @property
    def attention_scaling(self) -> float:
        if self.attention_factor is not None:
            return self.attention_factor
        if self.mscale and self.mscale_all_dim:
            return float(_mscale(self.factor, self.mscale) / _mscale(self.factor, self.mscale_all_dim))
        return _mscale(self.factor)

    def frequencies(self, dim: int, theta: float) -> torch.Tensor:
        def correction_dim(rotations: float) -> float:
            return (dim * math.log(self.original / (rotations * 2 * math.pi))) / (2 * math.log(theta))

        low, high = correction_dim(self.beta_fast), correction_dim(self.beta_slow)
        if self.truncate:
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, dim - 1)
        if low == high:
            high += 0.001  # transformers' guard against a zero-width ramp
        ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
        pos_freqs = theta ** (torch.arange(0, dim, 2).float() / dim)
        extrapolation, interpolation = 1.0 / pos_freqs, 1.0 / (self.factor * pos_freqs)
        keep = 1 - ramp  # the share of the plain (extrapolated) frequency
        return interpolation * (1 - keep) + extrapolation * keep


@dataclass(frozen=True)
class LongRope(RopeScaling):
    """LongRoPE (Phi-3): per-frequency divisors, `short_factor` while the sequence fits the
    original context and `long_factor` once it is longer (the whole batch, per call);
    cos/sin scaled by `attention_factor`, by default sqrt(1 + ln(factor) / ln(original))."""

    short_factor: tuple[float, ...]
    long_factor: tuple[float, ...]
    original: int
    factor: float | None = None
    attention_factor: float | None = None

    @property
    def attention_scaling(self) -> float:
        if self.attention_factor is not None:
            return self.attention_factor
        factor = self.factor if self.factor is not None else 1.0
        return 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(self.original))

    def frequencies(self, dim: int, theta: float) -> torch.Tensor:
        shape = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
        return torch.stack([1.0 / (torch.tensor(f, dtype=torch.float32) * theta ** shape)
                            for f in (self.short_factor, self.long_factor)])

    def select(self, cached: torch.Tensor, positions: torch.Tensor, dim: int, theta: float) -> torch.Tensor:
        return torch.where(_sequence_length(positions) > self.original, cached[1], cached[0])


@dataclass(frozen=True)
class RopeConfig:
    theta: float = 10000.0
    scaling: RopeScaling | None = None
    fraction: float = 1.0  # partial rotary: the first int(head_dim * fraction) dims of each head rotate

    def rotary_dim(self, head_dim: int) -> int:
        """transformers' `int(head_dim * partial_rotary_factor)`."""
        return int(head_dim * self.fraction)

    def width(self, head_dim: int) -> int:
        """How many leading dims of each head the tables rotate (the rotary dim, rounded up to
        even as transformers' tables are)."""
        return 2 * ((self.rotary_dim(head_dim) + 1) // 2)

    @property
    def attention_scaling(self) -> float:
        return self.scaling.attention_scaling if self.scaling is not None else 1.0


_INV: dict[tuple, torch.Tensor] = {}  # (rotary dim, theta, scaling) -> what the scaling caches, on the CPU


def inv_frequencies(head_dim: int, cfg: RopeConfig, device: torch.device | None = None,
                    positions: torch.Tensor | None = None) -> torch.Tensor:
    """The inverse frequencies (rotary dim / 2,) of a call over `positions` (None: a sequence
    within the original context)."""
    dim = cfg.rotary_dim(head_dim)
    key = (dim, cfg.theta, cfg.scaling)
    inv = _INV.get(key)
    if inv is None:
        inv = _INV[key] = (cfg.scaling or RopeScaling()).frequencies(dim, cfg.theta)
    if positions is None:
        positions = torch.zeros(1, 1, dtype=torch.int64, device=device)
    inv = inv.to(positions.device if device is None else device)  # a copy per call: the same graph input every step on XLA
    return inv if cfg.scaling is None else cfg.scaling.select(inv, positions, dim, cfg.theta)


def rope_tables(positions: torch.Tensor, head_dim: int, cfg: RopeConfig, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, (B, 1, T, width), computed in float32 for positions (B, T) and multiplied by
    the scaling's attention factor. What depends on the config alone is computed once per head
    size, on the CPU: a decode step builds its tables every step."""
    inv = inv_frequencies(head_dim, cfg, positions.device, positions)
    freqs = positions[..., None].float() * inv
    emb = torch.cat((freqs, freqs), dim=-1)[:, None]
    cos, sin = emb.cos(), emb.sin()
    scale = cfg.attention_scaling
    if scale != 1.0:
        cos, sin = cos * scale, sin * scale
    return cos.to(dtype), sin.to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + rotate_half(x) * sin
