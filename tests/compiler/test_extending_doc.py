"""docs/extending.md is true: its example kind, registered in a fresh process, works end to end
(every `python` block runs, in order), and its table of slots and kinds is the registry's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from zoo.compiler import registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "extending.md"

def test_the_walkthrough_runs() -> None:
    text = DOC.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 4
    out = subprocess.run([sys.executable, "-c", "\n".join(blocks)], capture_output=True, text=True, timeout=300,
                         cwd=DOC.parents[1])
    assert out.returncode == 0, out.stderr[-3000:]

def test_the_kinds_table_is_the_registry() -> None:
    table = DOC.read_text().split("<!-- kinds-table")[1].split("<!-- /kinds-table -->")[0]
    rows = dict(re.findall(r"^\| `([^`]+)` \| (.+) \|$", table, re.M))
    documented = {slot: re.findall(r"`([^`]+)`", kinds) for slot, kinds in rows.items()}
    assert documented == {slot: list(kinds) for slot, kinds in sorted(registry.slots().items())}

def test_the_pipeline_picture_is_drawn_from_the_registry(tmp_path: Path) -> None:
    out = tmp_path / "pipeline.png"
    run = subprocess.run([sys.executable, str(DOC.parent / "pipeline.py"), str(out)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
