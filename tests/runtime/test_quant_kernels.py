"""zoo's own weight-only int8 / int4 kernels (runtime/kernels/quant_gemm.c) and the AVX-512 bf16
one, on both instruction sets this CPU has (AVX2 always, AVX-512 where present: the library
picks at run time, `zoo_set_isa` forces one): decode-sized products against the dequantized
float64 matmul, prefill (dequantize + GEMM), the custom ops, and whole quantized models whose
decode steps run in the native block step, against the same model with the dequantized float
weights, op by op on the eager backend."""

from __future__ import annotations

import copy
from functools import partial
from typing import Any

import pytest
import torch
from zoo.runtime import kernels
from zoo.runtime.kernels import quant_ops
from zoo.runtime.quant import QuantLinear

import zoo
from tests.runtime.test_block_step import spy
from zoo.checkpoint.quantize import quantize_model

pytestmark = pytest.mark.skipif(not kernels.precheck()[0], reason=f"native kernels unavailable: {kernels.precheck()[1]}")


def _isas() -> list[int]:
    lib = kernels.library()
    if lib is None:
        return [1]
    return list(range(1, lib.zoo_set_isa(0) + 1))


@pytest.fixture(params=_isas(), ids=lambda i: {1: "avx2", 2: "avx512", 3: "avx512-bf16"}[i])
def isa(request: Any) -> Any:
    lib = kernels.library()
    assert lib.zoo_set_isa(request.param) == request.param
    yield request.param
    lib.zoo_set_isa(0)


@pytest.fixture
def float32_prefill(monkeypatch: Any) -> None:
    monkeypatch.setattr(quant_ops, "_BF16", False)


def _linear(n: int, k: int, seed: int, bias: bool = False) -> torch.nn.Linear:
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(k, n, bias=bias)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(n, k, generator=g) * 0.08)
        if bias:
            lin.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return lin


def _bf16_dots(isa: int, bits: int, sym: bool) -> bool:
    """Whether the kernel rounds x to bf16 (symmetric int4 on AVX512_BF16; K % 64 == 0 here)."""
    return isa == 3 and bits == 4 and sym


def _int8_activations(isa: int, bits: int) -> bool:
    """Whether the kernel rounds x to int8 blocks (int4 on AVX2-only CPUs)."""
    return isa == 1 and bits == 4


def w4a8_reference(x: torch.Tensor, ql: QuantLinear) -> torch.Tensor:
    """x @ dequant(W)^T with x rounded to int8 per block of 32 inputs (16 even, 16 odd ones:
    the int4 bytes' order), scale absmax / 127, as llama.cpp's Q8_0 activations; float64 sums."""
    from zoo.runtime.quant.functional import int4_codes

    n, k, g = ql.out_features, ql.in_features, ql.group_size
    codes = int4_codes(ql.qweight, getattr(ql, "zeros", None), g).double()
    scales = ql.scales.double()
    out = torch.zeros(x.shape[0], n, dtype=torch.float64)
    for m in range(x.shape[0]):
        for b in range(k // 32):
            idx = torch.cat([torch.arange(32 * b, 32 * b + 32, 2), torch.arange(32 * b + 1, 32 * b + 32, 2)])
            blk = x[m, idx]
            amax = blk.abs().max()
            xq = torch.round(blk * (torch.tensor(127.0) / amax)) if amax > 0 else torch.zeros(32)
            out[m] += (codes[:, idx] @ xq.double()) * scales[:, 32 * b // g] * (amax / 127).double()
    return out


SCHEMES = [(8, None, True), (4, 32, True), (4, 32, False), (4, 64, False), (4, 128, True)]


@pytest.mark.parametrize("bits,g,sym", SCHEMES, ids=lambda v: str(v))
@pytest.mark.parametrize("rows", [1, 2, 5, 8, 13, 32])
def test_decode_kernel_equals_the_dequantized_matmul(isa: int, bits: int, g: int | None, sym: bool, rows: int) -> None:
    n, k = 37, 256  # 37 rows: tiles of 16 and groups of 4 rows with a remainder
    lin = _linear(n, k, seed=rows + bits, bias=True)
    ql = QuantLinear.from_linear(lin, bits, g, sym)
    x = torch.randn(rows, k, generator=torch.Generator().manual_seed(rows))
    assert ql.kernel_for(x) == "native"
    if _int8_activations(isa, bits):
        ref = w4a8_reference(x, ql) + lin.bias.double()
    else:
        xr = x.bfloat16() if _bf16_dots(isa, bits, sym) else x  # symmetric int4 with bf16 dots: x rounded to bf16
        ref = torch.nn.functional.linear(xr.double(), ql.dequantized_weight(torch.float64), lin.bias.double())
    with torch.no_grad():
        y = ql(x)
    assert y.dtype == torch.float32 and y.shape == (rows, n)
    torch.testing.assert_close(y.double(), ref, rtol=2e-6, atol=2e-6 * ref.abs().max().item())
    # a row's result does not depend on the rows that come with it (self-speculative decoding)
    with torch.no_grad():
        assert torch.equal(ql(x[:1]), y[:1])


@pytest.mark.parametrize("k", [96, 100])  # 96: the AVX-512 split kernel; 100: the widening one
def test_bf16_decode_kernel(isa: int, k: int) -> None:
    w = (torch.randn(50, k, generator=torch.Generator().manual_seed(k)) * 0.1).bfloat16()
    for rows in (1, 3, 8, 20):
        x = torch.randn(rows, k)
        y = kernels.small_linear(x, w, None)
        ref = x.double() @ w.double().t()
        torch.testing.assert_close(y.double(), ref, rtol=1e-6, atol=1e-6 * ref.abs().max().item())


@pytest.mark.parametrize("bits,g,sym", SCHEMES[:3], ids=lambda v: str(v))
def test_prefill_dequantizes_then_multiplies(bits: int, g: int | None, sym: bool, monkeypatch: Any) -> None:
    lin = _linear(48, 128, seed=3)
    ql = QuantLinear.from_linear(lin, bits, g, sym)
    x = torch.randn(2, 40, 128)
    assert ql.kernel_for(x) == "native-dequantize"
    w64 = ql.dequantized_weight(torch.float64)
    monkeypatch.setattr(quant_ops, "_BF16", False)
    with torch.no_grad():
        y = ql(x)
    torch.testing.assert_close(y.double(), x.double() @ w64.t(), rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(quant_ops, "_BF16", True)  # bf16 GEMM: operands and result rounded to bf16
    with torch.no_grad():
        y = ql(x)
    ref = x.bfloat16().double() @ ql.dequantized_weight().bfloat16().double().t()
    torch.testing.assert_close(y.double(), ref, rtol=8e-3, atol=8e-3 * ref.abs().max().item())


@pytest.mark.parametrize("bits,g,sym,k", [(8, None, True, 300), (4, 32, True, 288), (4, 32, False, 96),
                                          (4, 64, False, 320), (4, 128, True, 512)], ids=str)
def test_packed_prefill_dequantizes_while_packing(bits: int, g: int | None, sym: bool, k: int) -> None:
    """The AVX2 prefill GEMM reads the integers and dequantizes 16 rows x 256 inputs at a time
    while packing: bit for bit the packed GEMM on the dequantized matrix (edge tiles in N and M,
    K past one 256-wide block, an int8 K that is no multiple of 8)."""
    ql = QuantLinear.from_linear(_linear(37, k, seed=k), bits, g, sym)
    x = torch.randn(45, k, generator=torch.Generator().manual_seed(k))
    z = getattr(ql, "zeros", None)
    y = quant_ops.quant_gemm_packed(x, ql.qweight.data, ql.scales.data, z, bits, g or 0)
    assert torch.equal(y, kernels.ops.gemm_nt(x, ql.dequantized_weight()))
    ref = x.double() @ ql.dequantized_weight(torch.float64).t()
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # strided rows, as a view of a wider tensor hands them over
        wide = torch.cat([x, torch.randn(45, 8)], dim=1)[:, :k]
        assert torch.equal(quant_ops.quant_gemm_packed(wide, ql.qweight.data, ql.scales.data, z, bits, g or 0), y)


def test_dequantize_op_equals_the_python_definition(isa: int) -> None:
    for bits, g, sym in SCHEMES:
        ql = QuantLinear.from_linear(_linear(40, 128, seed=bits), bits, g, sym)
        z = getattr(ql, "zeros", None)
        dense = quant_ops.dequantize(ql.qweight.data, ql.scales.data, z, bits, g or 0, 128)
        assert torch.equal(dense, ql.dequantized_weight())
        half = quant_ops.dequantize(ql.qweight.data, ql.scales.data, z, bits, g or 0, 128, True)
        assert half.dtype == torch.bfloat16 and torch.equal(half, ql.dequantized_weight().bfloat16())


def test_custom_ops_pass_opcheck() -> None:
    for bits, g, sym in (SCHEMES[0], SCHEMES[2]):
        ql = QuantLinear.from_linear(_linear(32, 64, seed=1), bits, g, sym)
        z = getattr(ql, "zeros", None)
        q, s = ql.qweight.data, ql.scales.data
        z = z.data if z is not None else None
        torch.library.opcheck(quant_ops.quant_gemm, (torch.randn(3, 64), q, s, z, bits, g or 0))
        torch.library.opcheck(quant_ops.dequantize, (q, s, z, bits, g or 0, 64))
        torch.library.opcheck(quant_ops.quant_gemm_packed, (torch.randn(40, 64), q, s, z, bits, g or 0))


def test_ops_refuse_what_the_kernels_do_not_read() -> None:
    ql = QuantLinear.from_linear(_linear(32, 64, seed=1), 4, 32)
    with pytest.raises(ValueError, match="x \\(M, K\\)"):
        quant_ops.quant_gemm(torch.randn(3, 64).double(), ql.qweight.data, ql.scales.data, None, 4, 32)
    with pytest.raises(ValueError, match="not in the stored layout"):
        quant_ops.quant_gemm(torch.randn(3, 64), ql.qweight.data[:16].clone(), ql.scales.data, None, 4, 32)
    with pytest.raises(ValueError, match="multiple of 32"):
        quant_ops.quant_gemm(torch.randn(3, 64), ql.qweight.data, ql.scales.data, None, 4, 16)
    small = QuantLinear.from_linear(_linear(32, 64, seed=1), 4, 16)  # group 16: torch's ops, not zoo's
    assert small.kernel_for(torch.randn(1, 64)) != "native"
    torch.testing.assert_close(small(torch.randn(1, 64)).shape, torch.Size([1, 32]))


TINY = ["arch.dim=64", "arch.n_layers=3", "arch.vocab_size=128", "arch.ffn.hidden_dim=128",
        "arch.attention.n_heads=4", "arch.attention.n_kv_heads=2", "arch.max_seq_len=128"]


def _dequantized_reference(float_model: Any, quantized: Any) -> Any:
    """The float model on the eager backend with every quantized linear's dequantized weight."""
    ref = zoo.build("llama-2-7b", TINY, seed=0, backend="eager").eval()
    ref.load_state_dict(float_model.state_dict())
    with torch.no_grad():
        for name, mod in quantized.named_modules():
            if isinstance(mod, QuantLinear):
                ref.get_submodule(name).weight.copy_(mod.dequantized_weight())
    return ref


@pytest.mark.parametrize("section", [
    {"kind": "int8"}, {"kind": "int4", "group_size": 32}, {"kind": "int4", "group_size": 64, "symmetric": False},
    {"kind": "int8", "skip": []},  # the output projection quantized too
], ids=["int8", "int4-g32", "int4-g64-asym", "int8-output"])
def test_quantized_models_decode_in_the_native_step(isa: int, section: dict, float32_prefill: None) -> None:
    base = zoo.build("llama-2-7b", TINY, seed=0, backend="sdpa").eval()
    with torch.no_grad():
        for p in base.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.1)  # attention far from uniform
    m = quantize_model(copy.deepcopy(base), section)
    ref = _dequantized_reference(base, m)
    taken = spy(m)
    tokens = torch.randint(0, 128, (2, 24), generator=torch.Generator().manual_seed(0))
    cuts = [10, 11, 12, 16, 17]

    def run(model: Any) -> torch.Tensor:
        cache = model.new_cache(2, 64)
        with torch.no_grad():
            return torch.cat([model(tokens[:, a:b], cache=cache) for a, b in zip([0] + cuts, cuts + [24])], 1)

    y, y_ref = run(m), run(ref)
    assert taken == [True] * 6  # the prompt (20 rows) and every step: one native call each
    bits = 4 if section["kind"] == "int4" else 8
    # kernels that round the activations are discontinuous in them: the native step's attention and
    # torch's differ by ~1e-7, which can move a value across a rounding boundary (one int8 step is
    # 1/127 of its block's largest), and 3 random layers of gain ~1.6 carry that to the logits
    rounding = 5e-2 if _int8_activations(isa, bits) else 2e-2 if _bf16_dots(isa, bits, section.get("symmetric", True)) \
        else None
    if rounding:
        assert (y - y_ref).abs().max() <= rounding * y_ref.abs().max()
    else:
        torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-4)
        assert m.generate([[5, 6, 7]], max_new_tokens=6) == ref.generate([[5, 6, 7]], max_new_tokens=6)
    m._step = None  # op by op, each QuantLinear on its own kernel: the same numbers
    y_op = run(m)
    if rounding:
        assert (y_op - y).abs().max() <= rounding * y.abs().max()
    else:
        torch.testing.assert_close(y_op, y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int8])
def test_a_rows_result_does_not_depend_on_how_many_rows_come_with_it(isa: int, dtype: torch.dtype) -> None:
    """Batch 1 has its own kernels (one weight row per thread); they sum in the multi-row
    kernels' order, bit for bit (self-speculative decoding compares one-row and many-row steps).
    AVX2 takes x at most 6 rows at a time for bf16 and int8, so 9 rows is two calls."""
    for k in (96, 100, 768):
        w = torch.randn(70, k, generator=torch.Generator().manual_seed(k))
        x = torch.randn(9, k)
        if dtype is torch.int8:
            ql = QuantLinear.from_linear(_linear(70, k, seed=k), 8)
            f = ql
        else:
            f = partial(kernels.small_linear, weight=w.to(dtype), bias=None)
        with torch.no_grad():
            ys = f(x)
            for m in range(1, 9):
                assert torch.equal(f(x[:m]), ys[:m]), (k, m)
