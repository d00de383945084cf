"""What a backend is: a named set of kernels and a way to say whether it can run here."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..mask import AttentionLayout


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str


class Backend:
    """Kernels for the ops whose best implementation depends on the hardware.

    Modules call `backend.attention(...)`; they never branch on the backend's name.
    """

    name: str = "base"

    def availability(self, device: torch.device) -> Availability:
        return Availability(True, "always available")

    def step_end(self) -> None:
        """Called once per decoding step. Lazy-tensor devices cut and run their graph here, so
        every step runs the same (cached) graph instead of one that grows with the cache."""

    def attention_kernel(self, layout_hint: str = "causal") -> str:
        """Name of the kernel `attention` uses, for `--explain`."""
        raise NotImplementedError

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: AttentionLayout,
                  window: int | None, scale: float) -> torch.Tensor:
        """q (B, H, T, D); k, v (B, Hkv, S, D) → (B, H, T, D)."""
        raise NotImplementedError


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run on this machine; the message says why."""
