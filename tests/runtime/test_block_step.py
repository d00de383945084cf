"""The native decode step (runtime/kernels/block_step.c): a whole stack of LLaMA-style blocks
in one call. Equal to the modules op by op; taken where it applies, declined (and nothing
written) where it does not; rebuilt when the weights or the cache change."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from zoo.runtime import kernels

import zoo

pytestmark = pytest.mark.skipif(not kernels.precheck()[0], reason=f"native kernels unavailable: {kernels.precheck()[1]}")

TINY = ["arch.dim=64", "arch.n_layers=3", "arch.vocab_size=120", "arch.ffn.hidden_dim=96", "arch.attention.n_heads=4",
        "arch.max_seq_len=128"]


def spy(model: Any) -> list[bool]:
    """Record, per call of the model's step kernel, whether it took the step."""
    taken: list[bool] = []
    inner = model._step

    def step(*a: Any, **kw: Any) -> Any:
        y = inner(*a, **kw)
        taken.append(y is not None)
        return y

    model._step = step
    return taken


def pair(spec: str, overrides: list[str]) -> tuple[Any, Any]:
    m = zoo.build(spec, overrides, seed=0, backend="sdpa").eval()
    ref = zoo.build(spec, overrides, seed=0, backend="eager").eval()
    ref.load_state_dict(m.state_dict())
    assert ref._step is None
    return m, ref


def run_chunks(model: Any, tokens: torch.Tensor, cuts: list[int], max_len: int = 64) -> tuple[torch.Tensor, Any]:
    cache = model.new_cache(tokens.shape[0], max_len)
    with torch.no_grad():
        out = [model(tokens[:, a:b], cache=cache) for a, b in zip([0] + cuts, cuts + [tokens.shape[1]])]
    return torch.cat(out, 1), cache


@pytest.mark.parametrize("spec, extra", [
    ("llama-2-7b", []),
    ("llama-2-7b", ["arch.attention.n_kv_heads=2"]),  # GQA
    ("llama-2-7b", ["arch.attention.n_kv_heads=1"]),  # MQA
    ("mistral/mistral-nemo-12b", ["arch.attention.n_kv_heads=2", "arch.attention.head_dim=24",
                                  "arch.attention.sliding_window=5"]),  # head_dim != dim/heads, a window
])
@pytest.mark.parametrize("batch", [1, 3])
def test_equals_modules_op_by_op(spec: str, extra: list[str], batch: int) -> None:
    m, ref = pair(spec, TINY + extra)
    taken = spy(m)
    tokens = torch.randint(0, 120, (batch, 30), generator=torch.Generator().manual_seed(batch))
    # a prompt (too many rows at batch 3: op by op), then 1-token steps and a 4-token chunk
    cuts = [12, 13, 14, 18, 19, 20]
    y, cache = run_chunks(m, tokens, cuts)
    y_ref, cache_ref = run_chunks(ref, tokens, cuts)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    for layer in range(3):  # the step wrote the same keys and values into the cache
        torch.testing.assert_close(cache.k[layer][:, :, :30], cache_ref.k[layer][:, :, :30], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(cache.v[layer][:, :, :30], cache_ref.v[layer][:, :, :30], atol=1e-5, rtol=1e-5)
    assert taken[1:] == [True] * len(cuts)  # every decode step ran natively
    assert taken[0] == (batch * 12 <= 32)


def test_declines_and_falls_back() -> None:
    m, ref = pair("llama-2-7b", TINY)
    taken = spy(m)
    # left-padded prompts: the cache has padding slots, the native step declines
    rows = [[5, 6, 7, 8, 9], [10, 11]]
    assert m.generate(rows, max_new_tokens=4) == ref.generate(rows, max_new_tokens=4)
    assert taken and not any(taken)
    # autograd wanted: op by op
    taken.clear()
    m.requires_grad_(True)
    cache = m.new_cache(1, 16)
    y = m(torch.tensor([[1, 2, 3]]), cache=cache)
    assert y.requires_grad and taken == [False]
    # the static cache of compiled backends: op by op
    taken.clear()
    with torch.no_grad():
        m(torch.tensor([[1, 2, 3]]), cache=m.new_cache(1, 16, static=True))
    assert taken == [False]


def test_other_blocks_decline() -> None:
    moe = zoo.build("mixtral/mixtral-8x7b", ["arch.dim=32", "arch.n_layers=2", "arch.vocab_size=50",
                                             "arch.attention.n_heads=4", "arch.attention.n_kv_heads=2",
                                             "arch.ffn.n_experts=4", "arch.ffn.expert.hidden_dim=48"],
                    seed=0, backend="sdpa").eval()
    taken = spy(moe)
    with torch.no_grad():
        moe(torch.tensor([[1, 2, 3]]), cache=moe.new_cache(1, 8))
    assert taken == [False]
    half = zoo.build("llama-2-7b", TINY, seed=0, backend="sdpa").eval().to(torch.float16)
    taken = spy(half)
    with torch.no_grad():
        half(torch.tensor([[1, 2, 3]]), cache=half.new_cache(1, 8))
    assert taken == [False]


def test_bf16_parameters_and_cache() -> None:
    """bf16 weights and cache are read as they are and summed in float32: close to the float32
    model with the same (bf16) weights, closer than torch's bf16 arithmetic op by op."""
    m = zoo.build("llama-2-7b", TINY + ["arch.attention.n_kv_heads=2"], seed=0, backend="sdpa", dtype="bfloat16").eval()
    ref = zoo.build("llama-2-7b", TINY + ["arch.attention.n_kv_heads=2"], seed=0, backend="eager").eval()
    ref.load_state_dict({k: v.float() for k, v in m.state_dict().items()})
    taken = spy(m)
    tokens = torch.randint(0, 120, (2, 20), generator=torch.Generator().manual_seed(0))
    y, cache = run_chunks(m, tokens, [8, 9, 13])
    y_ref, _ = run_chunks(ref, tokens, [8, 9, 13])
    assert all(taken) and cache.k[0].dtype == torch.bfloat16
    native = (y.float() - y_ref).abs().max().item()
    m._step = None
    y_torch, _ = run_chunks(m, tokens, [8, 9, 13])
    op_by_op = (y_torch.float() - y_ref).abs().max().item()
    assert native < 1e-2 * y_ref.abs().max().item() and native <= op_by_op, (native, op_by_op)


def test_rebuilt_when_weights_or_cache_change() -> None:
    m, ref = pair("llama-2-7b", TINY)
    tokens = torch.randint(0, 120, (1, 10), generator=torch.Generator().manual_seed(0))
    run_chunks(m, tokens, [4, 5])
    # new parameter tensors (load with assign=True): the step must read them, not the old ones
    fresh = zoo.build("llama-2-7b", TINY, seed=1, backend="eager").state_dict()
    m.load_state_dict(fresh, assign=True)
    ref.load_state_dict(fresh)
    torch.testing.assert_close(run_chunks(m, tokens, [4, 5])[0], run_chunks(ref, tokens, [4, 5])[0],
                               atol=1e-5, rtol=1e-5)
    # in-place updates are read as they are (the step reads the tensors' memory)
    with torch.no_grad():
        for model in (m, ref):
            model.blocks[1].ffn.down.weight.mul_(-2.0)
    torch.testing.assert_close(run_chunks(m, tokens, [4, 5])[0], run_chunks(ref, tokens, [4, 5])[0],
                               atol=1e-5, rtol=1e-5)


def test_speculative_and_multi_token_models() -> None:
    """A multi-token model's trunk and heads take the native step; speculative decoding stays
    equal to greedy decoding token for token."""
    m = zoo.build("tiny/tiny-code", ["arch.dim=64", "arch.attention.n_heads=4", "arch.ffn.hidden_dim=96"],
                  seed=0, backend="sdpa").eval()
    taken = spy(m)
    prompt = [[5, 9, 17, 33, 2, 8]]
    greedy = m.generate(prompt, max_new_tokens=12)
    assert any(taken)
    assert m.generate_speculative(prompt, max_new_tokens=12)[0] == greedy


def test_explain_names_it() -> None:
    c = zoo.compile("llama-2-7b", backend="sdpa")
    rows = [k for k in c.kernels if k.kind == "decode step"]
    assert rows and "native step" in rows[0].kernel
    c = zoo.compile("llama-2-7b", backend="eager")
    assert [k.kernel for k in c.kernels if k.kind == "decode step"] == ["modules op by op"]


@pytest.mark.parametrize("batch, t", [(1, 1), (1, 4), (2, 4)])
def test_heads_side_by_side_equal_the_loop(batch: int, t: int) -> None:
    """A multi-token model's heads as parallel native blocks == eager's one head after another,
    logits and every head's cache layer."""
    over = ["arch.dim=64", "arch.attention.n_heads=4", "arch.ffn.hidden_dim=96", "arch.vocab_size=300"]
    m, ref = pair("tiny/tiny-code", over)
    taken = spy(m)
    tokens = torch.randint(0, 300, (batch, 10 + t), generator=torch.Generator().manual_seed(t))
    out = []
    for model in (m, ref):
        cache = model.new_cache(batch, 32)
        with torch.no_grad():
            model(tokens[:, :10], cache=cache, all_heads=True)
            out.append((model(tokens[:, 10:], cache=cache, all_heads=True), cache))
    torch.testing.assert_close(out[0][0], out[1][0], atol=1e-5, rtol=1e-5)
    for layer in range(len(out[0][1].k)):
        torch.testing.assert_close(out[0][1].k[layer][:, :, :10 + t], out[1][1].k[layer][:, :, :10 + t],
                                   atol=1e-5, rtol=1e-5)
    assert taken[-1] and len(taken) == 2  # prefill and step: each trunk + heads in one native call


def test_models_still_deep_copy_after_a_native_step() -> None:
    import copy

    m, _ = pair("llama-2-7b", TINY)
    tokens = torch.randint(0, 120, (1, 8), generator=torch.Generator().manual_seed(3))
    y, _ = run_chunks(m, tokens, [4, 5])
    twin = copy.deepcopy(m)  # the cached ctypes arrays are not part of the model
    torch.testing.assert_close(run_chunks(twin, tokens, [4, 5])[0], y, atol=0, rtol=0)
