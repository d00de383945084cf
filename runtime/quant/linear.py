"""A linear layer whose weight is stored as int8 or int4 integers with float scales.

Kernels, picked per call (the module declines to a fallback rather than compute wrongly):
- int8: `torch._weight_int8pack_mm(x, q[N, K], scales[N])` on CPU (x float32/bf16/fp16; the
  scales are cast to x's dtype, as the op wants);
- int4: `aten._weight_int4pack_mm_for_cpu(x, packed, group_size, scales_and_zeros)` on CPU when
  out_features % 16 == 0 (the op's packing needs it). The op computes (q - 8) * s + z per group,
  so symmetric weights pass z = 0 and asymmetric ones z = (8 - zero point) * s. Its packed
  weight and scales_and_zeros [K/g, N, 2] are made from the stored tensors on the first call in
  each activation dtype and kept beside them (not in the state dict);
- elsewhere (CUDA, other dtypes, out_features not a multiple of 16), and for float32
  activations of more than `OP_ROWS` rows: the weight dequantized to x's dtype, then F.linear.

Measured (torch 2.13, AMD EPYC, 2 threads; a 768 x 2048 matrix, best of 15 on a busy machine):
with float32 activations both ops are far slower than dequantize + F.linear beyond a few rows
(64 rows: int8 op 159 ms, int4 op 336 ms, dequantize + matmul 2.2 / 6.5 ms; 1 row: 0.57 / 1.30
ms against 0.58 / 1.72), as their float32 paths are not the tuned ones; with bf16 activations
they are fast at every size (32 rows: int8 0.5 ms), so bf16/fp16 always takes the op.

Parameters (requires_grad=False, canonical names beside the layer's `bias`): `qweight`
(int8 [N, K] | uint8 [N, K/2], two int4 per byte), `scales` (float32 [N] | [N, K/g]) and, for
asymmetric int4, `zeros` (uint8 [N, K/g]). The layout is functional.py's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import MAX_ROWS, ready
from ..kernels.quant_ops import quant_linear
from ..kernels.weights import Quantized, readable
from .functional import (
    dequantize_int4,
    dequantize_int8,
    quantize_int4,
    quantize_int8,
    unpack_int4,
)

FLOATS = (torch.float32, torch.bfloat16, torch.float16)
OP_ROWS = 8  # float32 activations: the ops for decode-sized calls only (see above)


def _frozen(t: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t, requires_grad=False)


class QuantLinear(nn.Module):
    """y = x dequant(W)^T (+ b), W stored as integers (weight-only quantization)."""

    def __init__(self, in_features: int, out_features: int, bits: int, group_size: int | None = None,
                 symmetric: bool = True, bias: bool = False, device: Any = "meta") -> None:
        super().__init__()
        if bits not in (4, 8):
            raise ValueError(f"bits must be 4 or 8, got {bits}")
        if bits == 4 and (group_size is None or in_features % group_size):
            raise ValueError(f"int4 needs a group_size dividing in_features {in_features}, got {group_size}")
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.group_size, self.symmetric = bits, (group_size if bits == 4 else None), symmetric
        n, k = out_features, in_features
        if bits == 8:
            self.qweight = _frozen(torch.empty(n, k, dtype=torch.int8, device=device))
            self.scales = _frozen(torch.empty(n, dtype=torch.float32, device=device))
        else:
            g = k // group_size  # type: ignore[operator]
            self.qweight = _frozen(torch.empty(n, k // 2, dtype=torch.uint8, device=device))
            self.scales = _frozen(torch.empty(n, g, dtype=torch.float32, device=device))
            if not symmetric:
                self.zeros = _frozen(torch.empty(n, g, dtype=torch.uint8, device=device))
        self.bias = nn.Parameter(torch.empty(n, device=device)) if bias else None
        self.__dict__["_prepared"] = None  # the int4 op's packed weight, per activation dtype

    @classmethod
    @torch.no_grad()
    def from_linear(cls, lin: nn.Module, bits: int, group_size: int | None = None,
                    symmetric: bool = True) -> "QuantLinear":
        """The quantized copy of a float linear (its weight [out, in], optional bias)."""
        w = lin.weight
        out = cls(w.shape[1], w.shape[0], bits, group_size, symmetric, lin.bias is not None, device=w.device)
        if bits == 8:
            q, s = quantize_int8(w)
            out.qweight, out.scales = _frozen(q), _frozen(s)
        else:
            q, s, z = quantize_int4(w, group_size, symmetric)  # type: ignore[arg-type]
            out.qweight, out.scales = _frozen(q), _frozen(s)
            if z is not None:
                out.zeros = _frozen(z)
        if lin.bias is not None:
            out.bias = nn.Parameter(lin.bias.detach().clone(), requires_grad=lin.bias.requires_grad)
        return out

    # ------------------------------------------------------------------ math
    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The float weight [out, in] these integers stand for."""
        if self.bits == 8:
            return dequantize_int8(self.qweight, self.scales).to(dtype)
        return dequantize_int4(self.qweight, self.scales, getattr(self, "zeros", None), self.group_size).to(dtype)  # type: ignore[arg-type]

    def kernel_for(self, x: torch.Tensor) -> str:
        """Which kernel a call with activations like `x` runs (for tests and benches)."""
        if self._native(x):
            return "native" if x.numel() <= MAX_ROWS * self.in_features else "native-dequantize"
        if x.device.type != "cpu" or self.qweight.device.type != "cpu" or x.dtype not in FLOATS:
            return "dequantize"
        if self.bits == 4 and (self.out_features % 16 or self.group_size not in (32, 64, 128, 256)):
            return "dequantize"  # what torch's int4 op takes
        if x.dtype == torch.float32 and x.numel() > OP_ROWS * self.in_features:
            return "dequantize"
        return "int8pack_mm" if self.bits == 8 else "int4pack_mm"

    def _int4_operands(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        key = (dtype, id(self.qweight), self.qweight._version, id(self.scales), self.scales._version)
        prep = self.__dict__.get("_prepared")
        if prep is not None and prep[0] == key:
            return prep[1], prep[2]
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(unpack_int4(self.qweight).to(torch.int32), 1)
        s = self.scales.float()
        zeros = getattr(self, "zeros", None)
        z = torch.zeros_like(s) if zeros is None else (8 - zeros.float()) * s
        sz = torch.stack((s.t(), z.t()), dim=-1).to(dtype).contiguous()  # [K/g, N, 2]
        self.__dict__["_prepared"] = (key, packed, sz)
        return packed, sz

    def _native(self, x: torch.Tensor) -> bool:
        """Whether zoo's own kernels take float32 activations like `x` (runtime/kernels/quant_gemm.c)."""
        return (x.dtype is torch.float32 and x.device.type == "cpu" and self.qweight.device.type == "cpu"
                and readable(Quantized.of(self)) is None and ready())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype is torch.float32 and x.device.type == "cpu":
            y = quant_linear(x, Quantized.of(self), self.bias, MAX_ROWS)
            if y is not None:
                return y
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        kernel = self.kernel_for(x)
        if kernel == "int8pack_mm":
            y = torch._weight_int8pack_mm(x2.contiguous(), self.qweight, self.scales.to(x.dtype))
        elif kernel == "int4pack_mm":
            packed, sz = self._int4_operands(x.dtype)
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2.contiguous(), packed, self.group_size, sz)
        else:
            y = F.linear(x2, self.dequantized_weight(x.dtype))
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*lead, self.out_features)

    def bind_kernels(self, backend: Any, kernels: Any) -> None:
        """The backend's float linear kernel does not read integers: this module keeps its own."""

    def extra_repr(self) -> str:
        scheme = "int8" if self.bits == 8 else f"int4 g{self.group_size}" + ("" if self.symmetric else " asym")
        return f"in_features={self.in_features}, out_features={self.out_features}, {scheme}, bias={self.bias is not None}"
