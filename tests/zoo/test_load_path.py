"""One `zoo.load` walks one straight path: the source resolved, the checkpoint's format detected
once, the spec compiled into one IR with one backend, no explain text unless asked."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest

import zoo
import zoo.formats
from zoo.compiler.kinds import Decoder, VisionLanguage
from zoo.formats.export import export_hf
from zoo.runtime import backends
from zoo.runtime.backends.base import Backend


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter:
    seen: Counter = Counter()

    def counting(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **kw: Any) -> Any:
            seen[name] += 1
            return fn(*a, **kw)
        return wrapper

    for cls in (Decoder, VisionLanguage):  # every IR build starts at an arch kind
        monkeypatch.setattr(cls, "ir", counting("ir", cls.ir))
    for cls in set(backends._REGISTRY.values()):  # backends built (probing availability builds none)
        monkeypatch.setattr(cls, "__init__", counting("backend", cls.__init__))
    monkeypatch.setattr(Backend, "explain_rows", counting("explain", Backend.explain_rows))
    monkeypatch.setattr(zoo.formats, "detect", counting("detect", zoo.formats.detect))
    return seen


def test_loading_the_shipped_model_builds_once(calls: Counter) -> None:
    m = zoo.load("tiny-code")
    assert calls == Counter(ir=1, backend=1, detect=1), calls
    assert "decode step" in m.explain() and calls["explain"] == 1  # explain text only when asked
    m.explain()
    assert calls["explain"] == 1  # and computed once


@pytest.mark.parametrize("layout", ["hf", "zoo"])
def test_loading_a_saved_folder_builds_once(tmp_path: Path, layout: str, calls: Counter) -> None:
    m = zoo.build("llama-2-7b", ["arch.n_layers=2", "arch.dim=64", "arch.attention.n_heads=4",
                                 "arch.ffn.hidden_dim=96", "arch.vocab_size=128"])
    if layout == "hf":  # a transformers folder: config.json, no zoo.yaml
        export_hf(m, tmp_path / "m")
    else:
        m.save(tmp_path / "m")
    calls.clear()
    zoo.load(tmp_path / "m", ["arch.max_seq_len=512"])
    assert calls == Counter(ir=1, backend=1, detect=1), calls


def test_build_compiles_once(calls: Counter) -> None:
    zoo.build("llama-2-7b", ["arch.n_layers=1", "arch.dim=64", "arch.attention.n_heads=4"], init="meta")
    assert calls == Counter(ir=1, backend=1), calls


@pytest.mark.parametrize("name", [123, None, "", "  ", "a\x00b", "x" * 5000, "y" * 300])
def test_names_that_are_no_model_are_usage_errors(name: object) -> None:
    for call in (zoo.load, zoo.spec, zoo.compile):
        with pytest.raises(zoo.ZooError):
            call(name)  # type: ignore[arg-type]
