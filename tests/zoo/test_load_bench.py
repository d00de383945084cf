"""bench/load.py runs end to end (small mode: a ~5M-parameter checkpoint, every loader, warm
page cache). The full run (1.1B parameters, warm and cold) is for people: `python bench/load.py`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_small_mode_prints_the_table(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "load.py"), "--small", "--dir", str(tmp_path / "ck")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert "warm page cache" in out
    for loader in ("safetensors", "zoo", "transformers"):
        assert sum(line.startswith(loader) for line in out.splitlines()) == 1
    assert (tmp_path / "ck" / "zoo.yaml").is_file()
