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


AVX2 = torch.backends.cpu.get_cpu_capability() == "AVX2"
needs_avx2 = pytest.mark.skipif(not AVX2, reason="the packed GEMM is used on AVX2 CPUs only (MKL's is wider on AVX-512)")


@needs_avx2
@pytest.mark.parametrize("m, n, k", [(33, 17, 5), (40, 96, 768), (145, 1040, 257), (200, 33, 300), (37, 16, 8),
                                     (7 * 6, 16 * 3, 512)])
def test_packed_gemm_equals_torch_linear(m: int, n: int, k: int) -> None:
    """Prefill-sized inputs: every edge of the 6 x 16 tiles and of the 256-deep k blocks."""
    g = torch.Generator().manual_seed(m * n + k)
    x, w, b = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g), torch.randn(n, generator=g)
    with torch.no_grad():
        for bias in (None, b):
            y = kernels.cpu_linear(x, w, bias)
            assert y is not None and y.shape == (m, n) and y.dtype == torch.float32
            want = F.linear(x.double(), w.double(), None if bias is None else bias.double()).float()
            torch.testing.assert_close(y, want, atol=1e-4, rtol=1e-5)
        y3 = kernels.cpu_linear(x.reshape(1, m, k), w, None)  # (batch, tokens, features)
        assert y3 is not None and y3.shape == (1, m, n)
        wide = torch.randn(m, k + 9, generator=g)[:, 3:3 + k]  # a row stride that is not k
        torch.testing.assert_close(kernels.cpu_linear(wide, w, None), F.linear(wide, w), atol=1e-4, rtol=1e-5)


@needs_avx2
@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16])
def test_packed_gemm_reads_bf16_weights(x_dtype: torch.dtype) -> None:
    """bf16 weights are widened while packing (exact), summed in float32, rounded to x's dtype."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(kernels.MAX_ROWS + 8, 300, generator=g).to(x_dtype)
    w = torch.randn(50, 300, generator=g).bfloat16()
    with torch.no_grad():
        y = kernels.cpu_linear(x, w, None)
    assert y is not None and y.dtype == x_dtype
    want = F.linear(x.double(), w.double()).to(x_dtype)
    torch.testing.assert_close(y, want, atol=1e-4, rtol=1e-5 if x_dtype == torch.float32 else 8e-3)
    assert kernels.cpu_linear(x, w.requires_grad_(True), None) is None  # autograd: torch's path


@needs_avx2
def test_packed_gemm_rows_do_not_depend_on_the_batch_or_threads() -> None:
    """Each output is summed in the same order whatever the row count and thread count, so a
    prompt's logits don't change with what it is batched with."""
    g = torch.Generator().manual_seed(5)
    x, w = torch.randn(200, 600, generator=g), torch.randn(70, 600, generator=g)
    threads = torch.get_num_threads()
    with torch.no_grad():
        full = kernels.cpu_linear(x, w, None)
        part = kernels.cpu_linear(x[:41], w, None)
        try:
            torch.set_num_threads(1 if threads > 1 else 2)
            other = kernels.cpu_linear(x, w, None)
        finally:
            torch.set_num_threads(threads)
    assert torch.equal(full[:41], part) and torch.equal(full, other)


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


@needs_avx2
@pytest.mark.parametrize("b, h, hkv, t, s, d", [(1, 4, 4, 64, 64, 16), (2, 6, 2, 100, 130, 20), (1, 3, 1, 97, 97, 8),
                                                (1, 2, 2, 200, 200, 64)])
def test_causal_attention_equals_the_math(b: int, h: int, hkv: int, t: int, s: int, d: int) -> None:
    """Prefill attention: GQA/MQA, queries that are the last t of s keys (a chunk after a cache),
    head sizes off the 8/16 grid, query counts off the 48-row tasks."""
    g = torch.Generator().manual_seed(t + s + d)
    q = torch.randn(b, t, h, d, generator=g).transpose(1, 2)  # the projection's (B, T, H, D) memory
    k, v = torch.randn(b, hkv, s, d, generator=g), torch.randn(b, hkv, s, d, generator=g)
    with torch.no_grad():
        out = kernels.causal_attention(q, k, v, d ** -0.5)
    assert out is not None and out.shape == (b, h, t, d)
    assert out.transpose(1, 2).is_contiguous()  # merging the heads afterwards is a view
    allowed = torch.ones(t, s, dtype=torch.bool).tril(s - t)
    rep = h // hkv
    want = F.scaled_dot_product_attention(q.double(), k.double().repeat_interleave(rep, 1),
                                          v.double().repeat_interleave(rep, 1), attn_mask=allowed, scale=d ** -0.5)
    torch.testing.assert_close(out.double(), want, atol=2e-6, rtol=1e-5)


def test_bf16_causal_attention_runs_the_float32_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 prefill attention on AVX2 CPUs: widened, the float32 kernel, rounded back; the heads'
    merge afterwards is still a view. (The kernel is AVX2 code: it runs on any CPU with AVX2,
    so the test forces the AVX2 dispatch.)"""
    monkeypatch.setattr(kernels, "_AVX2", True)
    g = torch.Generator().manual_seed(5)
    q = torch.randn(2, 70, 4, 16, generator=g).transpose(1, 2).bfloat16()
    k, v = torch.randn(2, 2, 70, 16, generator=g).bfloat16(), torch.randn(2, 2, 70, 16, generator=g).bfloat16()
    with torch.no_grad():
        out = kernels.causal_attention(q, k, v, 0.25)
        want = kernels.causal_attention(q.float(), k.float(), v.float(), 0.25)
    assert out is not None and out.dtype is torch.bfloat16 and out.transpose(1, 2).is_contiguous()
    assert torch.equal(out, want.bfloat16())
    assert kernels.causal_attention(q, k.float(), v, 0.25) is None  # mixed dtypes: torch's path


def test_causal_attention_declines_what_it_does_not_handle() -> None:
    q, k = torch.randn(1, 2, 80, 16), torch.randn(1, 2, 80, 16)
    with torch.no_grad():
        assert kernels.causal_attention(q[:, :, :10], k[:, :, :10], k[:, :, :10], 0.25) is None  # few queries: sdpa
        assert kernels.causal_attention(q.double(), k.double(), k.double(), 0.25) is None
        assert kernels.causal_attention(q, k[:, :, :40], k[:, :, :40], 0.25) is None  # more queries than keys
    assert kernels.causal_attention(q.requires_grad_(True), k, k, 0.25) is None  # autograd: torch's path


def test_fused_elementwise_ops_equal_torch() -> None:
    from zoo.runtime.modules.rope import apply_rope

    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(3, 37, 72, generator=g), torch.randn(72, generator=g)
    with torch.no_grad():
        want = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w
        torch.testing.assert_close(kernels.rmsnorm(x, w, 1e-5), want, atol=1e-6, rtol=1e-5)
        gate, up = torch.randn(5, 1003, generator=g) * 6, torch.randn(5, 1003, generator=g)  # 1003: a scalar tail
        want = F.silu(gate) * up
        torch.testing.assert_close(kernels.silu_mul(gate.clone(), up), want, atol=1e-6, rtol=1e-5)
        for batches in (1, 2):
            q = torch.randn(2, 9, 4, 20, generator=g).transpose(1, 2)  # (B, H, T, D) view of (B, T, H, D)
            ang = torch.randn(batches, 1, 9, 10, generator=g)
            cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
            want = apply_rope(q, cos, sin)
            torch.testing.assert_close(kernels.rope(q.clone(), cos, sin), want, atol=1e-6, rtol=1e-5)
        assert kernels.rmsnorm(x.double(), w.double(), 1e-5) is None
        assert kernels.silu_mul(gate.t(), up.t()) is None  # not contiguous
    assert kernels.rmsnorm(x, w.requires_grad_(True), 1e-5) is None  # autograd: torch's ops


@pytest.mark.parametrize("extra", [[], ["arch.attention.n_kv_heads=2"]])
def test_prefill_on_native_kernels_equals_eager(extra: list[str]) -> None:
    """A prompt long enough for the packed GEMM and the causal attention, whole and in two chunks
    through a cache, against eager's op-by-op forward."""
    import zoo

    tiny = ["arch.dim=96", "arch.n_layers=2", "arch.vocab_size=100", "arch.ffn.hidden_dim=160",
            "arch.attention.n_heads=6", "arch.max_seq_len=512"] + extra
    m = zoo.build("llama-2-7b", tiny, seed=1, backend="sdpa").eval()
    ref = zoo.build("llama-2-7b", tiny, seed=1, backend="eager").eval()
    assert m.blocks[0].attn_norm.kernel is kernels.rmsnorm and ref.blocks[0].attn_norm.kernel is None
    tokens = torch.randint(0, 100, (2, 150), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(m(tokens), ref(tokens), atol=1e-4, rtol=1e-4)
        outs = []
        for model in (m, ref):
            cache = model.new_cache(2, 160)
            model(tokens[:, :70], cache=cache)
            outs.append(model(tokens[:, 70:], cache=cache))  # 80 queries after 70 cached keys
    torch.testing.assert_close(outs[0], outs[1], atol=1e-4, rtol=1e-4)
    assert "zoo fused RMSNorm" in zoo.compile("llama-2-7b", backend="sdpa").explain()


@pytest.mark.skipif(not kernels._ONEDNN, reason="oneDNN's float32 GEMM is the prefill linear of AVX-512 CPUs only")
def test_prefill_linear_on_avx512_is_onednn_float32() -> None:
    x, w, b = torch.randn(2, 70, 96), torch.randn(40, 96), torch.randn(40)
    y = kernels.cpu_linear(x, w, b)
    ref = (x.double() @ w.double().t() + b.double()).float()
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    assert kernels.onednn_linear(x, w.bfloat16(), None) is None  # float32 only (bf16: torch's own)
    w.requires_grad_(True)
    with torch.enable_grad():
        assert kernels.onednn_linear(x, w, None) is None  # autograd: torch's linear
