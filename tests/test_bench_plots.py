"""The benchmarks' --plot functions and docs/figures.py draw non-empty PNGs from the figures the
docs state (matplotlib is an extra: skipped without it), and a --json file round-trips through
--from-json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))

import figures  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG


def test_docs_figures_draw_every_plot(tmp_path: Path) -> None:
    paths = figures.draw(tmp_path)
    assert [p.name for p in paths] == ["btx-losses.png", "tokenizer-study.png", "tokenizer-swap.png", "scip.png",
                                       "scip-downstream.png"]
    assert all(_is_png(p) for p in paths)
    for p in paths:  # the committed pictures are the ones the script draws
        assert (ROOT / "docs" / p.name).is_file(), p.name


def test_from_json_replots_without_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved, out = tmp_path / "swap.json", tmp_path / "swap.png"
    saved.write_text(json.dumps(figures.SWAP))
    monkeypatch.setattr(sys, "argv", ["tokenizer_swap.py", "--from-json", str(saved), "--plot", str(out)])
    figures.bench("tokenizer_swap").main()
    assert _is_png(out)
