"""MkDocs hooks (mkdocs.yml `hooks:`) for the docs site.

1. The API reference: mkdocstrings reads the source statically (griffe), which finds `zoo` in zoo/
   but not `zoo.compiler`, `zoo.runtime` and `zoo.specs`: pyproject's package-dir maps those from
   the sibling folders compiler/, runtime/ and specs/. The hook lays out the import-shaped tree in a
   temporary folder (zoo/ with symbolic links to zoo/'s entries and to the mapped folders) and points
   the python handler's search path at it.
2. `mkdocs serve` also watches the source folders, so the API reference follows the docstrings.
3. The CLI section of the nav: cli/index.md, then every other page scripts/cli_docs.py wrote, so a
   new command's page needs no edit of mkdocs.yml.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the mapping as pyproject.toml has it
    tomllib = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parent.parent
CLI_SECTION = "Command line"
_tree: Path | None = None


def _import_tree() -> Path:
    """A folder holding `zoo` as Python imports it from an installed wheel."""
    global _tree
    if _tree is not None and _tree.is_dir():
        return _tree
    mapping: dict[str, str] = {"zoo": "zoo", "zoo.compiler": "compiler", "zoo.runtime": "runtime", "zoo.specs": "specs"}
    if tomllib is not None:
        mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    base = Path(tempfile.mkdtemp(prefix="zoo-docs-api-"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    pkg = base / "zoo"
    pkg.mkdir()
    for entry in (ROOT / mapping.get("zoo", "zoo")).iterdir():
        if entry.name == "__pycache__":
            continue
        if entry.name == "__init__.py":  # a real file, so griffe takes the package folder to be this one
            shutil.copyfile(entry, pkg / entry.name)
        else:
            (pkg / entry.name).symlink_to(entry)
    for name, folder in mapping.items():
        parts = name.split(".")
        if parts[0] == "zoo" and len(parts) == 2 and not (pkg / parts[1]).exists():
            (pkg / parts[1]).symlink_to(ROOT / folder)
    _tree = base
    return base


def _cli_nav(nav: list[Any], docs_dir: Path) -> None:
    pages = sorted(p.name for p in (docs_dir / "cli").glob("*.md") if p.name != "index.md")
    for item in nav:
        if isinstance(item, dict) and CLI_SECTION in item:
            item[CLI_SECTION] = ["cli/index.md"] + [f"cli/{p}" for p in pages]


@event_priority(100)  # before mkdocstrings' on_config, which creates the python handler
def on_config(config: Any) -> Any:
    handlers = config.plugins["mkdocstrings"].config.handlers
    handlers.setdefault("python", {})["paths"] = [str(_import_tree())]
    _cli_nav(config.nav or [], Path(config.docs_dir))
    return config


def on_serve(server: Any, config: Any, builder: Any) -> Any:
    for folder in ("zoo", "compiler", "runtime"):
        server.watch(str(ROOT / folder))
    return server
