"""Weight matrices as the native decode kernels read them (weights.h's `zoo_weight`): float32 or
bfloat16 tensors, or weight-only int8 / int4 integers with their float32 scales (the layout of
runtime/quant/functional.py), each described once by `describe` and passed to C by address."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import torch

F32, BF16, INT8, INT4 = 0, 1, 2, 3


class Weight(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("scales", ctypes.c_void_p), ("zeros", ctypes.c_void_p),
                ("type", ctypes.c_int64), ("group", ctypes.c_int64)]


@dataclass(frozen=True)
class Quantized:
    """An int8 / int4 weight's stored tensors (a QuantLinear's), for the kernels."""

    qweight: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor | None
    bits: int
    group: int  # int4's group size (0 for int8)
    shape: tuple[int, int]  # (out, in) of the float matrix

    @classmethod
    def of(cls, module: object) -> "Quantized":
        q = module.qweight  # type: ignore[attr-defined]
        return cls(q, module.scales, getattr(module, "zeros", None), module.bits,  # type: ignore[attr-defined]
                   module.group_size or 0, (module.out_features, module.in_features))  # type: ignore[attr-defined]

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return tuple(t for t in (self.qweight, self.scales, self.zeros) if t is not None)


def readable(w: Quantized) -> str | None:
    """Why the kernels cannot read `w` as it is stored (None: they can)."""
    n, k = w.shape
    if any(t.device.type != "cpu" or not t.is_contiguous() for t in w.tensors()):
        return "tensors not contiguous on the CPU"
    if w.scales.dtype is not torch.float32:
        return f"scales are {w.scales.dtype}, not float32"
    if w.bits == 4 and (w.group < 32 or w.group % 32):
        return f"int4 group size {w.group} is not a multiple of 32"
    if w.bits == 8:
        ok = w.qweight.dtype is torch.int8 and w.qweight.shape == (n, k) and w.scales.shape == (n,)
    else:
        g = w.group
        ok = (w.bits == 4 and g >= 32 and g % 32 == 0 and k % g == 0 and w.qweight.dtype is torch.uint8
              and w.qweight.shape == (n, k // 2) and w.scales.shape == (n, k // g)
              and (w.zeros is None or (w.zeros.dtype is torch.uint8 and w.zeros.shape == (n, k // g))))
    return None if ok else f"int{w.bits} tensors not in the stored layout"


def describe(w: torch.Tensor | Quantized, into: Weight | None = None) -> Weight:
    """The C struct for a float32 / bf16 matrix or a Quantized one (checked by the caller)."""
    s = into if into is not None else Weight()
    if isinstance(w, Quantized):
        s.data, s.scales = w.qweight.data_ptr(), w.scales.data_ptr()
        s.zeros = w.zeros.data_ptr() if w.zeros is not None else None
        s.type, s.group = (INT8, 0) if w.bits == 8 else (INT4, w.group)
    else:
        s.data, s.scales, s.zeros, s.group = w.data_ptr(), None, None, 0
        s.type = BF16 if w.dtype is torch.bfloat16 else F32
    return s


def declare(lib: ctypes.CDLL) -> None:
    wp = ctypes.POINTER(Weight)
    lib.zoo_wgemm.argtypes = [ctypes.c_void_p, wp, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
    lib.zoo_wgemm.restype = ctypes.c_int
    lib.zoo_gemm_nt_q.argtypes = [ctypes.c_void_p, ctypes.c_int64, wp, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                  ctypes.c_int64, ctypes.c_int64]
    lib.zoo_gemm_nt_q.restype = ctypes.c_int
    lib.zoo_dequantize.argtypes = [wp, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int]
    lib.zoo_dequantize.restype = ctypes.c_int
    lib.zoo_set_isa.argtypes = [ctypes.c_int]
    lib.zoo_set_isa.restype = ctypes.c_int
    lib.zoo_cpu_bf16.argtypes = []
    lib.zoo_cpu_bf16.restype = ctypes.c_int
