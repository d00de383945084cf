"""Weight-only quantization math, plain torch: what is stored and how it reads back.

int8, per output channel, symmetric:  s = absmax(row) / 127,  q = clamp(round(w / s), -127, 127),
    w' = q * s.
int4, per group of `g` inputs of a row (GPTQ's and torchao's definitions):
    symmetric:   s = absmax(group) / 7.5,  q = clamp(round(w / s) + 8, 0, 15),  w' = (q - 8) * s;
    asymmetric:  lo = min(group, 0), hi = max(group, 0), s = (hi - lo) / 15, z = clamp(round(-lo / s), 0, 15),
                 q = clamp(round(w / s) + z, 0, 15),  w' = (q - z) * s.
Scales are float32 (computed from the float32 weights). Two int4 values share a byte: the even
input in the low nibble, the odd one in the high nibble ([N, K/2] uint8), a layout of the file
that does not depend on a kernel's; kernels repack it (linear.py).
"""

from __future__ import annotations

import torch

TINY = torch.finfo(torch.float32).tiny  # a row or group of zeros gets this scale (its values stay 0)


def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(q int8 [N, K], scales float32 [N]) of a weight matrix [N, K]."""
    w = w.detach().float()
    scales = (w.abs().amax(dim=1) / 127).clamp(min=TINY)
    q = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scales


def dequantize_int8(q: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    return q.float() * scales.float()[:, None]


def quantize_int4(w: torch.Tensor, group_size: int,
                  symmetric: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(packed uint8 [N, K/2], scales float32 [N, K/g], zero points uint8 [N, K/g] or None for
    symmetric) of a weight matrix [N, K] whose K the group size divides."""
    n, k = w.shape
    if k % group_size:
        raise ValueError(f"group_size {group_size} does not divide in_features {k}")
    g = w.detach().float().reshape(n, k // group_size, group_size)
    if symmetric:
        scales = (g.abs().amax(dim=2) / 7.5).clamp(min=TINY)
        zeros = None
        q = torch.round(g / scales[..., None]) + 8
    else:
        lo = g.amin(dim=2).clamp(max=0)
        hi = g.amax(dim=2).clamp(min=0)
        scales = ((hi - lo) / 15).clamp(min=TINY)
        z = torch.round(-lo / scales).clamp(0, 15)
        zeros = z.to(torch.uint8)
        q = torch.round(g / scales[..., None]) + z[..., None]
    q = q.clamp(0, 15).to(torch.uint8).reshape(n, k)
    return pack_int4(q), scales, zeros


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """[N, K] values 0..15 -> [N, K/2] bytes (even input low nibble)."""
    q = q.to(torch.uint8)
    return q[:, 0::2] | (q[:, 1::2] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """[N, K/2] bytes -> [N, K] uint8 values 0..15."""
    out = torch.stack((packed & 15, packed >> 4), dim=-1)
    return out.reshape(packed.shape[0], -1)


def int4_codes(packed: torch.Tensor, zeros: torch.Tensor | None, group_size: int) -> torch.Tensor:
    """The signed integers q - zero (float32 [N, K]): symmetric's zero is 8."""
    q = unpack_int4(packed).float()
    if zeros is None:
        return q - 8
    return q - zeros.float().repeat_interleave(group_size, dim=1)


def dequantize_int4(packed: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None,
                    group_size: int) -> torch.Tensor:
    return int4_codes(packed, zeros, group_size) * scales.float().repeat_interleave(group_size, dim=1)
