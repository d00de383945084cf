"""The package's shape, checked from the source: an acyclic import graph (imports inside
functions counted), no module reaching into another's private names, compiler phases that
never name a component kind, and a zoo/ folder grouped by job."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from zoo.compiler import registry

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"zoo": ROOT / "zoo", "zoo.compiler": ROOT / "compiler", "zoo.runtime": ROOT / "runtime",
            "zoo.specs": ROOT / "specs"}
#: the compiler's phases: they walk the IR and ask each node's kind
PHASES = ["compiler/ir.py", "compiler/passes/check.py", "compiler/passes/accounting.py",
          "compiler/passes/kernels.py", "compiler/passes/sharding.py", "compiler/lowering.py", "compiler/explain.py", "compiler/__init__.py"]


def modules() -> dict[str, Path]:
    out = {}
    for prefix, folder in PACKAGES.items():
        for f in sorted(folder.rglob("*.py")):
            parts = [p for p in f.relative_to(folder).with_suffix("").parts if p != "__init__"]
            if prefix == "zoo" and parts and parts[0] in ("compiler", "runtime", "specs"):
                continue
            out[".".join([prefix, *parts])] = f
    return out


MODULES = modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import in the file, at any depth."""
    base = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                b = base
                for _ in range(node.level - 1):
                    b = b.rpartition(".")[0]
                mod = f"{b}.{mod}" if mod else b
            out.append((mod, [a.name for a in node.names], node.lineno))
    return out


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for m, path in MODULES.items():
        for mod, names, _ in _imports(m, path):
            for target in [mod, *(f"{mod}.{n}" for n in names)]:
                r = _resolve(target) if target == "zoo" or target.startswith("zoo.") else None
                # a module may import its own package's __init__ (its parent), not the reverse
                if r and r != m and not (m.startswith(r + ".") and MODULES[r].name == "__init__.py"):
                    graph[m].add(r)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_import_graph_has_no_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 100 and sum(map(len, graph.values())) > 300  # the parse saw the package
    assert cycles(graph) == []


def private_uses(m: str, path: Path) -> list[str]:
    """Where module `m` imports or uses another zoo module's private (_underscore) names."""
    bad = []
    aliases = {}  # local name -> the zoo module it is bound to
    for mod, names, line in _imports(m, path):
        if not (mod == "zoo" or mod.startswith("zoo.")):
            continue
        for n in names:
            if n.startswith("_") and not n.startswith("__"):
                bad.append(f"{path.name}:{line}: imports {mod}.{n}")
            elif f"{mod}.{n}" in MODULES:
                aliases[n] = f"{mod}.{n}"
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in MODULES:
                    aliases[a.asname or a.name.split(".")[0]] = a.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            bad.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
    return bad


def test_the_private_name_check_catches_both_forms(tmp_path: Path) -> None:
    f = tmp_path / "mod.py"
    f.write_text("from zoo.api import _dtype\nfrom zoo import api\n\ndef g():\n    return api._lower(1)\n")
    assert private_uses("zoo.fake", f) == ["mod.py:1: imports zoo.api._dtype", "mod.py:5: api._lower"]


def test_no_module_uses_another_modules_private_names() -> None:
    assert [b for m, path in MODULES.items() for b in private_uses(m, path)] == []


def _strings(path: Path) -> set[str]:
    return {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)}


@pytest.mark.parametrize("phase", PHASES)
def test_no_compiler_phase_names_a_kind(phase: str) -> None:
    names = registry.kind_names()
    assert {"decoder", "vision-language", "swiglu", "rmsnorm", "attention", "linear"} <= names  # registry is full
    assert _strings(ROOT / phase) & names == set()


def test_the_kind_name_check_sees_strings() -> None:
    assert "rmsnorm" in _strings(ROOT / "compiler/kinds/norm.py")  # where a kind's name belongs


def test_zoo_is_grouped_by_job() -> None:
    top = sorted(p.stem for p in (ROOT / "zoo").glob("*.py"))
    assert len(top) <= 10, top
    assert {"cli", "train", "formats", "checkpoint", "recipes"} <= {p.name for p in (ROOT / "zoo").iterdir()
                                                                 if (p / "__init__.py").is_file()}
    assert not [t for t in top if t.startswith(("cli_", "train_", "hf_"))]  # prefix families became packages
    assert not list((ROOT / "compiler").rglob("*_vision.py"))  # no twins
