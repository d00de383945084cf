"""Decoding: sampling filters, stop tokens, seeds, the preallocated cache, and the loss."""

from __future__ import annotations

import torch

import zoo
from zoo.runtime.sampling import filter_logits, sample

TINY = ["arch.dim=64", "arch.n_layers=2", "arch.vocab_size=64", "arch.ffn.hidden_dim=96", "arch.max_seq_len=128"]


def _model():  # type: ignore[no-untyped-def]
    m = zoo.build("llama-2-7b", TINY, seed=0).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:
                p.mul_(8.0)
    return m


def test_top_k_keeps_exactly_k() -> None:
    logits = torch.tensor([[1.0, 5.0, 3.0, 2.0, 4.0]])
    kept = torch.isfinite(filter_logits(logits, top_k=2))
    assert kept.tolist() == [[False, True, False, False, True]]


def test_top_p_keeps_smallest_nucleus() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = torch.isfinite(filter_logits(probs.log(), top_p=0.75))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(filter_logits(probs.log(), top_p=0.4))
    assert kept.tolist() == [[True, False, False, False]]  # the top token always stays


def test_temperature_zero_is_argmax_and_sampling_respects_filters() -> None:
    logits = torch.randn(4, 50)
    assert sample(logits, 0.0).tolist() == logits.argmax(-1).tolist()
    g = torch.Generator().manual_seed(0)
    top3 = logits.topk(3, dim=-1).indices
    for _ in range(20):
        s = sample(logits, 1.5, top_k=3, generator=g)
        assert all(int(t) in row.tolist() for t, row in zip(s, top3))


def test_sampling_is_reproducible_with_a_seed_and_varies_without() -> None:
    m = _model()
    a = m.generate([[1, 2, 3]], max_new_tokens=12, temperature=1.0, top_p=0.95, seed=7)
    b = m.generate([[1, 2, 3]], max_new_tokens=12, temperature=1.0, top_p=0.95, seed=7)
    c = m.generate([[1, 2, 3]], max_new_tokens=12, temperature=1.0, top_p=0.95, seed=8)
    assert a == b and a != c


def test_stop_tokens_end_each_row_independently() -> None:
    m = _model()
    free = m.generate([[1, 2, 3], [4, 5]], max_new_tokens=10)
    stop = free[0][3]
    out = m.generate([[1, 2, 3], [4, 5]], max_new_tokens=10, stop_tokens=[stop])
    first = free[0].index(stop)
    assert out[0] == free[0][: first + 1]
    row1_end = free[1].index(stop) + 1 if stop in free[1] else 10
    assert out[1] == free[1][:row1_end]


def test_cache_is_preallocated_once() -> None:
    m = _model()
    cache = m.new_cache(1, 40)
    ptrs = [t.data_ptr() for t in cache.k + cache.v]
    with torch.no_grad():
        m(torch.tensor([[1, 2, 3]]), cache=cache)
        for t in range(10):
            m(torch.tensor([[t]]), cache=cache)
    assert [t.data_ptr() for t in cache.k + cache.v] == ptrs
    assert cache.length == 13


def test_cache_overflow_is_a_clear_error() -> None:
    m = _model()
    cache = m.new_cache(1, 4)
    import pytest

    with pytest.raises(ValueError, match="KV cache overflow"):
        m(torch.tensor([[1, 2, 3, 4, 5]]), cache=cache)


def test_loss_matches_transformers() -> None:
    from tests.oracles import hf_llama_from

    m = _model()
    ref = hf_llama_from(m)
    tokens = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        ours = m.loss(tokens)
        theirs = ref(tokens, labels=tokens).loss
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_loss_backpropagates_to_every_parameter() -> None:
    m = _model().train()
    m.loss(torch.randint(0, 64, (2, 12))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


def test_static_cache_matches_dynamic_cache_with_padding() -> None:
    """The static-shape path (XLA, torch.compile) gives the same logits and tokens."""
    m = _model()
    from zoo.runtime.generation import left_pad

    tokens, mask = left_pad([[5, 6, 7, 8, 9], [3, 4]], pad_id=0)
    with torch.no_grad():
        outs = []
        for static in (False, True):
            cache = m.new_cache(2, 16, static=static)
            steps = [m(tokens, attention_mask=mask, cache=cache)[:, -1]]
            for t in (11, 12, 13):
                steps.append(m(torch.tensor([[t], [t + 1]]), cache=cache)[:, -1])
            outs.append(torch.stack(steps))
            assert cache.length == 8
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)


def test_rollback_then_redecode_equals_straight_decode() -> None:
    m = _model()
    for static in (False, True):
        with torch.no_grad():
            cache = m.new_cache(1, 16, static=static)
            m(torch.tensor([[1, 2, 3]]), cache=cache)
            m(torch.tensor([[9, 9]]), cache=cache)  # speculative tokens, rejected
            cache.rollback(3)
            a = m(torch.tensor([[4]]), cache=cache)
            b = m(torch.tensor([[1, 2, 3, 4]]))[:, -1:]
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
