"""docs/models.md lists every transformers family zoo ships, with the key map its file names,
and each parity test it cites exists."""

from __future__ import annotations

import re
from pathlib import Path

from zoo.formats.hf.family import families

ROOT = Path(__file__).resolve().parents[2]


def test_the_table_is_the_family_files() -> None:
    text = (ROOT / "docs" / "models.md").read_text()
    table = text.split("<!-- families-table")[1].split("<!-- /families-table -->")[0]
    rows = re.findall(r"^\| `([^`]+)` \| (\w+) \| `([^`]+)` \| [^|]+ \| ([^|]+) \|", table, re.M)
    assert {r[0]: (r[1], r[2]) for r in rows} == {t: (f.architecture, f.format) for t, f in families().items()}
    for *_, tests in rows:
        cited = re.findall(r"`([^`]+\.py)`", tests)
        assert cited and all((ROOT / p).is_file() for p in cited), tests
