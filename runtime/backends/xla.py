"""torch_xla devices (TPU, or XLA's CPU device in tests).

XLA compiles one graph per distinct set of shapes, so this backend asks for a static KV cache
(every decode step has equal shapes) and keeps masks as tensor ops. On TPU, plain causal
attention whose length suits the kernel's blocks goes to torch_xla's Pallas flash attention."""

from __future__ import annotations

import torch

from ..mask import AttentionLayout
from .base import Availability, Backend
from .eager import EagerBackend

PALLAS_BLOCK = 128


def xla_device_kind(device: torch.device) -> str | None:
    """'TPU', 'CPU', 'CUDA' … for an XLA device; None when torch_xla is missing."""
    try:
        import torch_xla.runtime as xr
    except ImportError:
        return None
    try:
        return str(xr.device_type())
    except Exception:
        return None


def attention_kernel_for(device_kind: str | None, layout: AttentionLayout, window: int | None, head_dim: int) -> str:
    """Which kernel XLA attention runs: 'pallas_flash' on TPU for plain causal blocks, else 'xla_math'."""
    if (device_kind == "TPU" and layout.plain_causal and window is None and layout.q_len == layout.kv_len
            and layout.q_len % PALLAS_BLOCK == 0 and head_dim % 64 == 0):
        return "pallas_flash"
    return "xla_math"


class XLABackend(Backend):
    name = "xla"
    prefers_static_cache = True

    def __init__(self) -> None:
        self._math = EagerBackend()

    @classmethod
    def availability(cls, device: torch.device) -> Availability:
        try:
            import torch_xla  # noqa: F401
        except ImportError:
            return Availability(False, "torch_xla not installed (it needs torch 2.9.0: scripts/setup-xla)")
        if device.type != "xla":
            return Availability(False, f"needs an XLA device, have {device.type} (pass device='xla')")
        return Availability(True, f"XLA device ({xla_device_kind(device) or 'unknown'})")

    def step_end(self) -> None:
        import torch_xla

        torch_xla.sync()

    def attention_kernel(self, layout_hint: str = "causal") -> str:
        return "XLA-compiled matmul/softmax (Pallas flash attention on TPU)"

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: AttentionLayout,
                  window: int | None, scale: float) -> torch.Tensor:
        if attention_kernel_for(xla_device_kind(q.device), layout, window, q.shape[-1]) == "pallas_flash":
            from torch_xla.experimental.custom_kernel import flash_attention

            rep = q.shape[1] // k.shape[1]
            if rep > 1:
                k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            return flash_attention(q, k, v, causal=True, sm_scale=scale)
        return self._math.attention(q, k, v, layout, window, scale)
