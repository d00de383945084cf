"""torch.compile and torch.export on the default CPU backend: the native kernels are custom ops
(`torch.ops.zoo.*`, runtime/kernels/ops.py), so Dynamo traces a whole forward, prefill and
cached decode steps alike, without a graph break, and export captures the cache-free forward."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from zoo.runtime.kernels import ops, precheck

import zoo

pytestmark = pytest.mark.skipif(not precheck()[0], reason=f"zoo native kernels unavailable: {precheck()[1]}")

TINY = ["arch.dim=64", "arch.n_layers=2", "arch.attention.n_heads=4", "arch.attention.n_kv_heads=2",
        "arch.ffn.hidden_dim=96", "arch.vocab_size=256", "arch.max_seq_len=128"]


def tiny() -> torch.nn.Module:
    m = zoo.build("llama-2-7b", TINY)
    assert m.backend.name == "sdpa"  # what zoo.build picks on a CPU: the backend with the native kernels
    return m.eval()


def zoo_ops(gm: torch.fx.GraphModule) -> set[str]:
    """Names of the zoo ops a graph calls, directly or through auto_functionalized (in-place ops)."""
    names = set()
    for node in gm.graph.nodes:
        for target in [node.target, *node.args]:
            if isinstance(target, torch._ops.OpOverload) and target.namespace == "zoo":
                names.add(target._opname)
    return names


def test_compile_fullgraph_prefill_and_decode_equal_eager() -> None:
    torch.manual_seed(0)
    m = tiny()
    tokens = torch.randint(0, 256, (2, 12))
    steps = torch.randint(0, 256, (2, 3))
    compiled = torch.compile(m, fullgraph=True)
    with torch.no_grad():
        ref_cache, cache = m.new_cache(2, 32), m.new_cache(2, 32)
        ref = [m(tokens, cache=ref_cache)] + [m(steps[:, i:i + 1], cache=ref_cache) for i in range(3)]
        got = [compiled(tokens, cache=cache)] + [compiled(steps[:, i:i + 1], cache=cache) for i in range(3)]
        for r, g in zip(ref, got):
            torch.testing.assert_close(g, r, atol=1e-5, rtol=0)
        for layer in range(2):  # the compiled steps wrote the cache as eager did
            torch.testing.assert_close(cache.k[layer][:, :, :15], ref_cache.k[layer][:, :, :15], atol=1e-5, rtol=0)
        assert cache.length == ref_cache.length == 15
        full = torch.randint(0, 256, (1, 40))  # cache-free, more rows than the small-GEMM takes
        torch.testing.assert_close(compiled(full), m(full), atol=1e-5, rtol=0)


def test_the_zoo_kernels_are_in_the_graph_without_breaks() -> None:
    m = tiny()
    with torch.no_grad():
        prefill = torch._dynamo.explain(m)(torch.randint(0, 256, (1, 8)))
        cache = m.new_cache(1, 16)
        m(torch.randint(0, 256, (1, 8)), cache=cache)
        step = torch._dynamo.explain(m)(torch.randint(0, 256, (1, 1)), cache=cache)
    for ex in (prefill, step):
        assert ex.graph_break_count == 0 and ex.graph_count == 1, ex.break_reasons
    assert {"rmsnorm", "small_gemm", "silu_mul", "rope"} <= zoo_ops(prefill.graphs[0])
    assert {"stack_step", "rmsnorm", "small_gemm"} <= zoo_ops(step.graphs[0])  # the whole decode step: one op


def test_export_cache_free_forward() -> None:
    torch.manual_seed(0)
    m = tiny()
    tokens = torch.randint(0, 256, (2, 10))
    with torch.no_grad():
        ep = torch.export.export(m, (tokens,))
        assert {"rmsnorm", "small_gemm", "silu_mul", "rope"} <= zoo_ops(ep.graph_module)
        other = torch.randint(0, 256, (2, 10))
        for t in (tokens, other):
            torch.testing.assert_close(ep.module()(t), m(t), atol=1e-5, rtol=0)


def test_eager_calls_skip_the_dispatcher_and_traced_ones_do_not() -> None:
    class Seen(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: set[str] = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            if func.namespace == "zoo":
                self.ops.add(func._opname)
            return func(*args, **(kwargs or {}))

    m = tiny()
    tokens = torch.randint(0, 256, (1, 6))
    with torch.no_grad():
        ref = m(tokens)
        with Seen() as seen:  # a dispatch mode (a FLOP counter, a tracer) sees the kernels as ops
            out = m(tokens)
    assert {"rmsnorm", "small_gemm", "silu_mul", "rope"} <= seen.ops
    torch.testing.assert_close(out, ref, atol=0, rtol=0)


# ------------------------------------------------------------------ opcheck, each op
def _step_inputs(dtype: torch.dtype) -> tuple:
    m = tiny().to(dtype)
    blocks = list(m.blocks)
    weights = [blk.get_submodule(n).weight.detach() for blk in blocks for n in
               ("attn_norm", "ffn_norm", "attn.q", "attn.k", "attn.v", "attn.o", "ffn.gate", "ffn.up", "ffn.down")]
    cache = m.new_cache(2, 16)
    kc, vc = [c.normal_() for c in cache.k], [c.normal_() for c in cache.v]
    cos, sin = m.rope_for(blocks[0], torch.tensor([[5, 6], [5, 6]]), torch.float32, {})
    config = [w for blk in blocks for w in (0, 1)]
    scales = [s for blk in blocks for s in (blk.attn_norm.eps, blk.attn.scale)]
    return torch.randn(2, 2, 64).to(dtype), weights, kc, vc, cos.contiguous(), sin.contiguous(), config, scales, 5, 0


def _cases() -> list[tuple[str, tuple]]:
    g = torch.Generator().manual_seed(0)

    def r(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(dtype)

    q = r(2, 4, 70, 16)
    tables = r(1, 1, 5, 16), r(1, 1, 5, 16)
    return [
        ("small_gemm", (r(3, 40), r(24, 40))),
        ("small_gemm", (r(1, 40), r(24, 40, dtype=torch.bfloat16))),
        ("small_bgemm", (r(2, 3, 40), r(2, 24, 40))),
        ("gemm_nt", (r(70, 48)[:, :40], r(24, 40))),  # rows at a stride
        ("gemm_nt", (r(70, 40), r(24, 40, dtype=torch.bfloat16))),
        ("causal_attention", (q[:, :, 6:], r(2, 2, 70, 16), r(2, 2, 70, 16), 0.25)),  # 64 queries after 6 keys, GQA
        ("rmsnorm", (r(2, 5, 32), r(32), 1e-5)),
        ("silu_mul", (r(2, 5, 32), r(2, 5, 32))),
        ("rope", (r(2, 5, 4, 16).transpose(1, 2), *tables)),  # a projection's view, written in place
        ("stack_step", _step_inputs(torch.float32)),
        ("stack_step", _step_inputs(torch.bfloat16)),
    ]


@pytest.mark.parametrize("case", range(11))
def test_opcheck(case: int) -> None:
    name, args = _cases()[case]
    torch.library.opcheck(ops.OPS[name], args)


def test_ops_refuse_what_the_c_code_does_not_take() -> None:
    with pytest.raises(ValueError, match="x \\(M, K\\)"):
        torch.ops.zoo.small_gemm(torch.randn(2, 3), torch.randn(4, 5))
    with pytest.raises(ValueError, match="float32"):
        torch.ops.zoo.rmsnorm(torch.randn(2, 8, dtype=torch.float64), torch.randn(8, dtype=torch.float64), 1e-5)
    x, weights, kc, vc, cos, sin, config, scales, _, _ = _step_inputs(torch.float32)
    with pytest.raises(ValueError, match="max_len"):  # slots past the cache: refused, nothing written
        torch.ops.zoo.stack_step(x, weights, kc, vc, cos, sin, config, scales, 15, 0)
