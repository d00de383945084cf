"""docs/distributed.md's memory table is what the sharding plan pass computes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_memory_table_is_the_plan_pass() -> None:
    spec = importlib.util.spec_from_file_location("distributed_tables", ROOT / "scripts" / "distributed_tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = (ROOT / "docs" / "distributed.md").read_text()
    committed = text.split("<!-- memory-table -->")[1].split("<!-- /memory-table -->")[0].strip()
    assert committed == module.table(), "run .venv/bin/python scripts/distributed_tables.py and update the doc"
