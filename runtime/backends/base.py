"""What a backend is: a named set of kernels and a way to say whether it can run here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..errors import ZooError
from ..mask import AttentionLayout, block_diagonal_mask


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str


class Backend:
    """Kernels for the ops whose best implementation depends on the hardware.

    Modules call `backend.attention(...)`; they never branch on the backend's name.
    """

    name: str = "base"

    @classmethod
    def availability(cls, device: torch.device) -> Availability:
        """Whether this backend can run on `device` here, and why (asked of the class: probing
        builds nothing)."""
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

    def linear_kernel(self) -> tuple[Any, str]:
        """A stand-in for F.linear (x, weight, bias) → y or None to decline the call, and its
        name for `--explain`. The default: none, torch's linear everywhere."""
        return None, "torch linear"

    def block_kernel(self) -> tuple[Any, str]:
        """Decoder blocks for decode steps, (blocks, x, ropes, layout, cache) → output or None to
        decline, and its name for `--explain`. The default: none, the modules op by op."""
        return None, "modules op by op"

    def elementwise_kernels(self) -> tuple[dict[str, Any], str]:
        """Fused stand-ins for element-wise ops, by name, and their description for `--explain`:
        'rmsnorm' (x, weight, eps) -> y; 'silu_mul' (gate, up) -> silu(gate) * up, may write into
        gate; 'rope' (x, cos, sin) -> x rotated, may write into x. Each returns None to decline the
        call. The default: none, torch's ops everywhere."""
        return {}, "torch ops"

    def explain_rows(self) -> list[tuple[str, str, str, str]]:
        """(op, label, kernel, why) rows that `--explain` adds for what the backend binds
        model-wide rather than per component."""
        return [("*", "linear", self.linear_kernel()[1], "every projection (q/k/v/o, ffn, output)"),
                ("*", "element-wise", self.elementwise_kernels()[1], "norms, gated activations, rotary embeddings"),
                ("blocks.*", "decode step", self.block_kernel()[1],
                 "all blocks of a decode step in one call where it applies")]

    def block_diagonal_kernel(self) -> str:
        """Name of the kernel `block_diagonal_attention` uses, for `--explain`."""
        return "matmul + softmax (float32) + matmul, dense block-diagonal boolean mask"

    def block_diagonal_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seqlens: Sequence[int],
                                 scale: float) -> torch.Tensor:
        """Bidirectional attention within the blocks of one packed row: q (1, H, T, D), k, v
        (1, Hkv, T, D), T = sum(seqlens); a query sees exactly the keys of its own block (the
        patches of several images in one vision forward). This default is the plain math with
        a dense (T, T) mask, so every backend runs it; backends with a structured kernel override."""
        rep = q.shape[1] // k.shape[1]
        if rep > 1:
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        scores = torch.matmul(q, k.transpose(-1, -2)) * scale
        scores = scores.masked_fill(~block_diagonal_mask(seqlens, q.device), float("-inf"))
        probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        return torch.matmul(probs, v)


@dataclass(frozen=True)
class Kernels:
    """What a backend offers the modules of one model, asked once per binding."""

    linear: Any  # stand-in for F.linear, or None
    elementwise: dict[str, Any]  # fused element-wise ops by name
    step: Any  # the decode-step kernel over a run of blocks, or None


def bind(model: Any, backend: Backend) -> Kernels:
    """Give every module of `model` that takes kernels (`bind_kernels(backend, kernels)`) the
    backend's; the modules pick what they use, so the backend names no module class."""
    kernels = Kernels(backend.linear_kernel()[0], backend.elementwise_kernels()[0] or {}, backend.block_kernel()[0])
    for mod in model.modules():
        hook = getattr(mod, "bind_kernels", None)
        if hook is not None:
            hook(backend, kernels)
    return kernels


class BackendUnavailable(ZooError, RuntimeError):
    """The requested backend cannot run on this machine; the message says why."""
