"""Weights on huge pages: aligned, advised, and otherwise ordinary tensors (save, load, train)."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.runtime.memory import HUGE_PAGE, MIN_BYTES, huge_page_empty, huge_pages_available

BIG = ["arch.dim=512", "arch.n_layers=1", "arch.vocab_size=1024", "arch.ffn.hidden_dim=1024", "arch.attention.n_heads=8"]


def test_small_tensors_are_plain() -> None:
    t = huge_page_empty((16, 16), torch.float32)
    assert t.shape == (16, 16) and t.storage_offset() == 0


@pytest.mark.skipif(not huge_pages_available(), reason="no transparent huge pages here")
def test_big_tensors_start_on_a_huge_page() -> None:
    t = huge_page_empty((MIN_BYTES // 4 + 3,), torch.float32)
    assert t.data_ptr() % HUGE_PAGE == 0 and t.is_contiguous()
    t.fill_(1.5)
    assert float(t.sum()) == 1.5 * t.numel()


@pytest.mark.skipif(not huge_pages_available(), reason="no transparent huge pages here")
def test_built_models_use_them_and_save_and_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    m = zoo.build("llama-2-7b", BIG, seed=0).eval()
    w = m.embed.weight  # 2 MiB
    assert w.data_ptr() % HUGE_PAGE == 0
    again = zoo.build("llama-2-7b", BIG, seed=0)  # the same seed gives the same weights
    torch.testing.assert_close(again.blocks[0].ffn.up.weight, m.blocks[0].ffn.up.weight, atol=0, rtol=0)
    m.save(tmp_path / "ckpt")
    back = zoo.load(tmp_path / "ckpt")
    x = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        torch.testing.assert_close(back(x), m(x), atol=0, rtol=0)
    cast = zoo.load(tmp_path / "ckpt", dtype="bfloat16")  # a cast copies: onto huge pages
    assert cast.embed.weight.dtype == torch.bfloat16 and cast.embed.weight.data_ptr() % HUGE_PAGE == 0
