"""Weights holding NaN or infinity are named when a checkpoint loads (a warning by default,
an error on request), in every layout, whatever the dtype the load casts to."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

import zoo
from zoo.checkpoint import CheckpointError
from zoo.checkpoint.finite import all_finite
from zoo.checkpoint.tensors import NonFiniteWeightsWarning
from zoo.compiler.errors import UsageError
from zoo.formats.export import export_hf

TINY = ["arch.dim=64", "arch.n_layers=2", "arch.attention.n_heads=4", "arch.ffn.hidden_dim=96", "arch.vocab_size=128"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("layout", ["zoo", "hf"])
def test_nonfinite_weights_are_named(tmp_path: Path, bad: float, layout: str) -> None:
    m = zoo.build("llama-2-7b", TINY)
    with torch.no_grad():
        m.blocks[1].attn.k.weight[3, 5] = bad
    folder = m.save(tmp_path / "m") if layout == "zoo" else export_hf(m, tmp_path / "m")
    with pytest.warns(NonFiniteWeightsWarning, match=r"1 weight tensor\(s\) hold NaN or infinity: blocks.1.attn.k.weight"):
        zoo.load(folder)
    with pytest.warns(NonFiniteWeightsWarning):
        zoo.load(folder, dtype="bfloat16")
    with pytest.raises(CheckpointError, match="blocks.1.attn.k.weight"):
        zoo.load(folder, on_nonfinite="error")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zoo.load(folder, on_nonfinite="ignore")


def test_finite_weights_load_without_a_word(tmp_path: Path) -> None:
    folder = zoo.build("llama-2-7b", TINY).save(tmp_path / "m")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zoo.load(folder, on_nonfinite="error")
    with pytest.raises(UsageError, match="on_nonfinite must be one of warn, error, ignore"):
        zoo.load(folder, on_nonfinite="maybe")


def test_the_check_is_exact_when_the_sum_overflows() -> None:
    big = torch.full((1000,), 3e38)  # finite, but its float32 sum is inf
    assert all_finite(big) and not all_finite(torch.cat([big, torch.tensor([float("nan")])]))
    assert all_finite(torch.tensor([1.0, 2.0], dtype=torch.bfloat16)) and all_finite(torch.arange(3))


def test_a_file_found_finite_is_not_read_again_until_it_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zoo.loading

    calls = []
    monkeypatch.setattr(zoo.loading, "all_finite", lambda t: calls.append(t) or all_finite(t))
    m = zoo.build("llama-2-7b", TINY)
    folder = m.save(tmp_path / "m")
    zoo.load(folder)
    first = len(calls)
    assert first == len(list(m.parameters()))  # every weight checked once
    zoo.load(folder)
    assert len(calls) == first  # zero-copy views of files already found finite: skipped
    zoo.load(folder, dtype="bfloat16")
    assert len(calls) == 2 * first  # cast copies are always checked where they land
    with torch.no_grad():
        m.norm.weight[0] = float("nan")
    m.save(folder)  # a new version of the files
    with pytest.warns(NonFiniteWeightsWarning, match="norm.weight"):
        zoo.load(folder)
