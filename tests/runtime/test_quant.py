"""Weight-only int8/int4 (runtime/quant): the stored integers against a plain reference of
their definitions (per-channel absmax int8; group-wise int4 as GPTQ and torchao define it), and
the kernels (zoo's own for float32 activations, torch's int8/int4 CPU ops for bf16 ones) against
the dequantized float matmul."""

from __future__ import annotations

import pytest
import torch
from zoo.runtime.quant import (
    QuantLinear,
    dequantize_int4,
    dequantize_int8,
    quantize_int4,
    quantize_int8,
    unpack_int4,
)


def ref_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row by row, in float32 (as torchao computes): s = max|w| / 127, q = round(w / s) clipped
    to [-127, 127]."""
    qs, ss = [], []
    for row in w.float():
        s = row.abs().max() / 127
        qs.append(torch.clamp(torch.round(row / s), -127, 127))
        ss.append(s)
    return torch.stack(qs), torch.stack(ss)


def ref_int4(w: torch.Tensor, g: int, symmetric: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Group by group, in float32: symmetric s = max|w| / 7.5, q = round(w/s) + 8 in [0, 15],
    zero 8; asymmetric s = (max(w,0) - min(w,0)) / 15, zero = round(-min/s), q = round(w/s) + zero."""
    n, k = w.shape
    q = torch.empty(n, k)
    scales, zeros = torch.empty(n, k // g), torch.empty(n, k // g)
    for i in range(n):
        for j in range(k // g):
            grp = w[i, j * g:(j + 1) * g].float()
            if symmetric:
                s = grp.abs().max() / 7.5
                z = 8.0
            else:
                lo, hi = min(grp.min().item(), 0.0), max(grp.max().item(), 0.0)
                s = (torch.tensor(hi) - torch.tensor(lo)) / 15
                z = float(torch.clamp(torch.round(-torch.tensor(lo) / s), 0, 15))
            q[i, j * g:(j + 1) * g] = torch.clamp(torch.round(grp / s) + z, 0, 15).float()
            scales[i, j], zeros[i, j] = s, z
    return q, scales, zeros


def weights(n: int, k: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed)) * 0.08


def test_int8_matches_the_reference():
    w = weights(48, 96)
    q, s = quantize_int8(w)
    rq, rs = ref_int8(w)
    assert q.dtype == torch.int8 and s.dtype == torch.float32
    assert torch.equal(s, rs) and torch.equal(q.float(), rq)
    err = (dequantize_int8(q, s) - w).abs()
    assert (err <= s[:, None] / 2 + 1e-7).all()  # within half a step


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("g", [32, 64, 128])
def test_int4_matches_the_reference(g, symmetric):
    w = weights(32, 256, seed=g)
    packed, s, z = quantize_int4(w, g, symmetric)
    rq, rs, rz = ref_int4(w, g, symmetric)
    assert packed.shape == (32, 128) and packed.dtype == torch.uint8
    assert torch.equal(s, rs)
    if symmetric:
        assert z is None
    else:
        assert torch.equal(z.float(), rz)
    assert torch.equal(unpack_int4(packed).float(), rq)
    zeros = torch.full_like(rz, 8.0) if symmetric else rz
    ref_w = (rq - zeros.repeat_interleave(g, 1)) * rs.repeat_interleave(g, 1)
    deq = dequantize_int4(packed, s, z, g)
    assert torch.equal(deq, ref_w)
    assert (deq - w).abs().max() <= s.max() * 0.5 + 1e-6  # within half a step (the clipped absmax: 1/2 too)


def test_int4_packing_is_low_nibble_first():
    q = torch.tensor([[1, 2, 15, 0]], dtype=torch.uint8)
    from zoo.runtime.quant import pack_int4

    assert pack_int4(q).tolist() == [[0x21, 0x0F]]
    assert torch.equal(unpack_int4(pack_int4(q)), q)


def _linear(n: int, k: int, bias: bool = False) -> torch.nn.Linear:
    lin = torch.nn.Linear(k, n, bias=bias)
    with torch.no_grad():
        lin.weight.copy_(weights(n, k, seed=n + k))
        if bias:
            lin.bias.normal_(0, 0.1)
    return lin


@pytest.mark.parametrize("bits,g,sym,n,kernel", [
    (8, None, True, 48, "int8pack_mm"), (4, 32, True, 48, "int4pack_mm"), (4, 64, False, 64, "int4pack_mm"),
    (4, 128, True, 32, "int4pack_mm"), (4, 32, False, 40, "dequantize")])  # 40 % 16: the int4 op does not apply
@pytest.mark.parametrize("rows", [1, 4, 20])
def test_kernels_match_the_dequantized_matmul(bits, g, sym, n, kernel, rows, monkeypatch):
    from zoo.runtime import kernels
    from zoo.runtime.kernels import quant_ops

    monkeypatch.setattr(quant_ops, "_BF16", False)  # prefill-sized: a float32 GEMM (bf16: test_quant_kernels.py)
    k = 256
    lin = _linear(n, k, bias=True)
    ql = QuantLinear.from_linear(lin, bits, g, sym)
    x = torch.randn(2, rows, k)
    if kernels.ready():  # float32 activations: zoo's own kernels (quant_gemm.c), dequantize + GEMM beyond 32 rows
        assert ql.kernel_for(x) == ("native" if 2 * rows <= 32 else "native-dequantize")
    else:  # torch's ops for few rows only
        assert ql.kernel_for(x) == (kernel if 2 * rows <= 8 else "dequantize")
    assert ql.kernel_for(x.bfloat16()) == kernel
    # symmetric int4 decode on AVX512_BF16 CPUs: bf16 dot products, x rounded to bf16 (test_quant_kernels.py)
    dots = kernels.ready() and bits == 4 and sym and 2 * rows <= 32 and kernels.library().zoo_set_isa(0) == 3
    xr = x.bfloat16() if dots else x
    ref = torch.nn.functional.linear(xr.double(), ql.dequantized_weight(torch.float64), lin.bias.double())
    y = ql(x)
    assert y.shape == (2, rows, n) and y.dtype == torch.float32
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bits,g", [(8, None), (4, 32)])
def test_bf16_activations(bits, g):
    ql = QuantLinear.from_linear(_linear(32, 128), bits, g)
    x = torch.randn(3, 128)
    y = ql(x.bfloat16())
    assert y.dtype == torch.bfloat16
    ref = torch.nn.functional.linear(x.bfloat16().double(), ql.dequantized_weight(torch.float64))
    torch.testing.assert_close(y.double(), ref, rtol=2e-2, atol=2e-2)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="group_size"):
        QuantLinear(100, 32, 4, group_size=32)
    with pytest.raises(ValueError, match="bits"):
        QuantLinear(64, 32, 3)
    with pytest.raises(ValueError, match="does not divide"):
        quantize_int4(weights(4, 96), 64)
