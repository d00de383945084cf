"""The native small-GEMM kernel of CPU decode steps: equal to torch's linear, declines what it
does not handle, shares torch's OpenMP runtime."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from zoo.runtime import kernels

pytestmark = pytest.mark.skipif(not kernels.precheck()[0], reason=f"small-GEMM unavailable: {kernels.precheck()[1]}")


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 7, 8, 9, 16, 21, 32])
@pytest.mark.parametrize("n, k", [(64, 64), (37, 100), (300, 7), (1, 19)])
def test_equals_torch_linear(rows: int, n: int, k: int) -> None:
    g = torch.Generator().manual_seed(rows * 1000 + n + k)
    x = torch.randn(rows, k, generator=g)
    w = torch.randn(n, k, generator=g)
    b = torch.randn(n, generator=g)
    with torch.no_grad():
        for bias in (None, b):
            y = kernels.small_linear(x, w, bias)
            assert y is not None
            torch.testing.assert_close(y, F.linear(x, w, bias), atol=1e-5, rtol=1e-5)
            y3 = kernels.small_linear(x[None], w, bias)  # (1, rows, k): batch-major decode input
            assert y3 is not None and y3.shape == (1, rows, n)


@pytest.mark.parametrize("rows", [1, 3, 8, 32])
@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16])
def test_bf16_weights_read_as_they_are(rows: int, x_dtype: torch.dtype) -> None:
    """bf16 weights: the float32 product of the same values (widening is exact), in x's dtype."""
    g = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, 72, generator=g).to(x_dtype)
    w = torch.randn(40, 72, generator=g).bfloat16()
    b = torch.randn(40, generator=g).bfloat16()
    with torch.no_grad():
        y = kernels.small_linear(x, w, b)
    assert y is not None and y.dtype == x_dtype
    want = F.linear(x.float(), w.float(), b.float()).to(x_dtype)
    torch.testing.assert_close(y, want, atol=1e-5, rtol=1e-5 if x_dtype == torch.float32 else 8e-3)


def test_bf16_prefill_is_widened_on_avx2() -> None:
    x = torch.randn(kernels.MAX_ROWS + 8, 64).bfloat16()
    w = torch.randn(48, 64).bfloat16()
    with torch.no_grad():
        y = kernels.cpu_linear(x, w, None)
    if torch.backends.cpu.get_cpu_capability() != "AVX2":
        assert y is None  # CPUs with bf16 arithmetic keep torch's bf16 GEMM
        return
    assert y is not None and y.dtype == torch.bfloat16
    torch.testing.assert_close(y, F.linear(x.float(), w.float()).bfloat16(), atol=0, rtol=0)
    assert kernels.cpu_linear(x, w.requires_grad_(True), None) is None  # autograd: torch's path


@pytest.mark.parametrize("b, m, n, k", [(1, 1, 8, 8), (4, 4, 576, 192), (3, 5, 37, 100), (2, 17, 19, 7)])
def test_batched_equals_bmm(b: int, m: int, n: int, k: int) -> None:
    g = torch.Generator().manual_seed(b + m + n + k)
    x, w = torch.randn(b, m, k, generator=g), torch.randn(b, n, k, generator=g)
    with torch.no_grad():
        y = kernels.small_bmm(x, w)
    assert y is not None
    torch.testing.assert_close(y, torch.bmm(x, w.transpose(1, 2)), atol=1e-5, rtol=1e-5)


def test_declines_what_it_does_not_handle() -> None:
    w = torch.randn(16, 32)
    with torch.no_grad():
        assert kernels.small_linear(torch.randn(kernels.MAX_ROWS + 1, 32), w, None) is None  # MKL's GEMM does well
        assert kernels.small_linear(torch.randn(2, 32, dtype=torch.float16), w.half(), None) is None
        assert kernels.small_linear(torch.randn(2, 32, dtype=torch.bfloat16), w, None) is None  # float32 weights
        assert kernels.small_linear(torch.randn(2, 32), w.t().contiguous().t(), None) is None  # strided weight
    wg = w.clone().requires_grad_(True)
    assert kernels.small_linear(torch.randn(2, 32), wg, None) is None  # autograd: torch's path
    with torch.no_grad():
        assert kernels.small_linear(torch.randn(2, 32), wg, None) is not None


def test_decode_logits_equal_eager() -> None:
    import zoo

    tiny = ["arch.dim=64", "arch.n_layers=2", "arch.vocab_size=100", "arch.ffn.hidden_dim=96", "arch.attention.n_heads=4"]
    m = zoo.build("llama-2-7b", tiny, seed=0, backend="sdpa").eval()
    assert m.blocks[0].attn.q.kernel is kernels.cpu_linear and m._linear is kernels.cpu_linear
    ref = zoo.build("llama-2-7b", tiny, seed=0, backend="eager").eval()
    assert ref.blocks[0].attn.q.kernel is None
    prompt = torch.tensor([[1, 5, 7, 9]])
    with torch.no_grad():
        out = []
        for model in (m, ref):
            cache = model.new_cache(1, 16)
            model(prompt, cache=cache)
            out.append(torch.cat([model(torch.tensor([[t]]), cache=cache) for t in (3, 4, 5)], 1))
    torch.testing.assert_close(out[0], out[1], atol=1e-5, rtol=1e-5)


def test_one_openmp_runtime_and_the_switch() -> None:
    code = ("import torch, zoo.runtime.kernels as k; assert k.small_gemm_status()[0];"
            "maps = open('/proc/self/maps').read();"
            "print(len({l.split()[-1] for l in maps.splitlines() if 'libgomp' in l}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"  # the kernel runs on torch's own OpenMP threads
    code = "import zoo.runtime.kernels as k; print(k.precheck())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"ZOO_KERNELS": "0", "PATH": ""})
    assert "ZOO_KERNELS=0" in out.stdout
