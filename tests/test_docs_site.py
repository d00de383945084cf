"""The docs site (mkdocs.yml): `mkdocs build --strict` passes, so a broken link or anchor, a docs
page missing from the nav or an API reference (mkdocstrings) that does not resolve fails the
suite; and the CLI pages in docs/cli/ equal what scripts/cli_docs.py makes of the parser."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REGENERATE = ".venv/bin/python scripts/cli_docs.py"


def _cli_docs():
    spec = importlib.util.spec_from_file_location("cli_docs", ROOT / "scripts" / "cli_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(site: Path, docs_dir: Path | None = None) -> subprocess.CompletedProcess:
    # not --quiet: it hides the warnings that --strict counts, and the build passes whatever they say
    config = ROOT / "mkdocs.yml"
    if docs_dir is not None:  # the same config over another docs folder
        text = config.read_text().replace("docs_dir: docs", f"docs_dir: {docs_dir}")
        config = docs_dir.parent / "mkdocs.yml"
        config.write_text(text.replace("scripts/mkdocs_hooks.py", str(ROOT / "scripts" / "mkdocs_hooks.py")))
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config),
                           "-d", str(site)], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_cli_pages_equal_the_parser():
    bad = _cli_docs().stale()
    assert not bad, f"docs/cli is out of date ({', '.join(bad)}): run {REGENERATE} and commit docs/cli"


def test_every_registered_command_has_a_page():
    from zoo.cli.main import build_parser

    cli_docs = _cli_docs()
    names = {name for name, _, _ in cli_docs._subcommands(build_parser())}
    assert {"list", "show", "compile", "generate", "convert", "train", "btx"} <= names
    assert set(cli_docs.pages()) == {"index.md"} | {f"{n}.md" for n in names}


def test_site_builds_strict(tmp_path):
    """~3 s: every docs/*.md page in the nav, every link and anchor found, every `::: zoo...`
    reference collected."""
    r = _build(tmp_path / "site")
    assert r.returncode == 0, f"mkdocs build --strict failed:\n{r.stdout}\n{r.stderr}"
    site = tmp_path / "site"
    for page in sorted((ROOT / "docs").glob("*.md")):
        out = "index.html" if page.stem == "index" else f"{page.stem}/index.html"
        assert (site / out).is_file(), page.name
    for page in sorted((ROOT / "docs" / "cli").glob("*.md")):
        assert (site / "cli" / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")).is_file()
    api = (site / "reference" / "zoo" / "index.html").read_text()
    assert 'id="zoo.load"' in api and 'id="zoo.build"' in api
    assert 'id="zoo.model.ModelMixin.generate_text"' in (site / "reference" / "model" / "index.html").read_text()
    assert "zoo.compiler.registry.register" in (site / "reference" / "registry" / "index.html").read_text()


@pytest.mark.parametrize("mistakes", [
    # warnings: --strict reports them all in one build
    {"orphan.md": ("# Not in the nav\n", "orphan.md"),
     "architecture.md": ("[a missing page](no-such-page.md)\n", "no-such-page.md"),
     "btx.md": ("[a missing anchor](specs.md#no-such-heading)\n", "no-such-heading")},
    # an error: the build stops at it
    {"reference/errors.md": ("::: zoo.compiler.errors.NoSuchError\n", "NoSuchError")},
], ids=["links-and-nav", "api-reference"])
def test_strict_build_catches(tmp_path, mistakes):
    """The guard works: each kind of mistake fails the strict build, naming the culprit."""
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    for page, (problem, _) in mistakes.items():
        target = docs / page
        target.write_text((target.read_text() + "\n" if target.exists() else "") + problem)
    r = _build(tmp_path / "site", docs)
    assert r.returncode != 0, f"{mistakes} built without complaint"
    for _, named in mistakes.values():
        assert named in r.stdout + r.stderr, r.stdout + r.stderr
