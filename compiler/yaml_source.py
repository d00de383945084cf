"""Safe YAML loading that remembers where every key came from.

Specs are data: only PyYAML's SafeLoader runs, so no tag can construct objects. Each key path
is mapped to its file and line so that errors can point at the exact spot.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import Location, Problem, SpecError

KeyPath = tuple[str, ...]
Origins = dict[KeyPath, Location]


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-5` as a float (YAML 1.1 demands a dot: `1.0e-5`)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)
# A spec has no dates: `revision: 2024-01-01` is a string, not a datetime.date that nothing
# downstream (omegaconf, the schema) accepts. (add_implicit_resolver gave _Loader its own table.)
for _first, _resolvers in _Loader.yaml_implicit_resolvers.items():
    _resolvers[:] = [(tag, rx) for tag, rx in _resolvers if tag != "tag:yaml.org,2002:timestamp"]

# What a spec value may be once loaded; explicit tags like !!binary or !!set give other types.
_SCALARS = (str, int, float, bool, type(None))
_COLLECTION_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
# Aliases share nodes, so a tiny file can expand to billions of nodes ("billion laughs").
_MAX_NODES = 10_000  # a real spec has a few hundred
MAX_DEPTH = 32  # nested mappings and lists (a real spec: 5)
MAX_BYTES = 1 << 20  # a spec file (a real one: a few KB)


class _Walk:
    """Per-file state of the node walk: the origins found, the alias guards."""

    def __init__(self, file: str, loader: _Loader):
        self.file, self.loader = file, loader
        self.origins: Origins = {}
        self.active: set[int] = set()  # nodes on the current path (an alias back to one is a cycle)
        self.count = 0

    def fail(self, path: KeyPath, message: str, node: yaml.Node) -> SpecError:
        return SpecError(Problem(".".join(path), message, Location(self.file, node.start_mark.line + 1)),
                         source=self.file)


def _convert(node: yaml.Node, path: KeyPath, walk: _Walk) -> Any:
    walk.count += 1
    if walk.count > _MAX_NODES:
        raise walk.fail(path, f"the document expands to more than {_MAX_NODES:,} values (aliases?)", node)
    if len(path) > MAX_DEPTH:
        raise walk.fail(path[:3] + ("…",), f"nested more than {MAX_DEPTH} levels deep", node)
    if id(node) in walk.active:
        raise walk.fail(path, "an alias refers to a node that contains it (recursive structure)", node)
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _COLLECTION_TAGS:
        raise walk.fail(path, f"the tag {node.tag} is not allowed: a spec is plain data", node)
    if isinstance(node, yaml.MappingNode):
        walk.active.add(id(node))
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise walk.fail(path, "keys must be plain scalars", key_node)
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise walk.fail(path, "YAML merge keys (<<) are not supported; use `extends:`", key_node)
            key = str(walk.loader.construct_object(key_node))
            sub = path + (key,)
            if key in out:
                raise walk.fail(sub, "duplicate key", key_node)
            walk.origins[sub] = Location(walk.file, key_node.start_mark.line + 1)
            out[key] = _convert(value_node, sub, walk)
        walk.active.discard(id(node))
        return out
    if isinstance(node, yaml.SequenceNode):
        walk.active.add(id(node))
        items = []
        for i, item in enumerate(node.value):
            walk.origins[path + (str(i),)] = Location(walk.file, item.start_mark.line + 1)
            items.append(_convert(item, path + (str(i),), walk))
        walk.active.discard(id(node))
        return items
    value = walk.loader.construct_object(node, deep=True)
    if not isinstance(value, _SCALARS):
        raise walk.fail(path, f"unsupported YAML value of type {type(value).__name__} (tag {node.tag})", node)
    return value


def _hint(text: str, problem: str, line: int | None) -> str:
    """A likely cause for a syntax error, when one is recognizable."""
    lines = text.splitlines()
    if "'\\t'" in problem:
        return " (indent with spaces, not tabs)"
    if line and 0 < line <= len(lines) and "${" in lines[line - 1]:
        return ' (inside {...} or [...], quote interpolations: "${...}")'
    return ""


def load_yaml_text(text: str, file: str) -> tuple[Any, Origins]:
    """Parse YAML text; return the data and the origin of every key path. Bounded: at most
    MAX_BYTES of text, _MAX_NODES values (aliases expanded) and MAX_DEPTH levels."""
    if len(text) > MAX_BYTES:
        raise SpecError(Problem("", f"{len(text):,} characters; a spec is at most {MAX_BYTES:,}", Location(file)),
                        source=file)
    loader = None
    try:
        loader = _Loader(text)  # the reader refuses control characters here (NUL bytes …)
        walk = _Walk(file, loader)
        origins = walk.origins
        node = loader.get_single_node()
        data = {} if node is None else _convert(node, (), walk)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        problem = str(e.problem or e)
        if e.context and e.context_mark and mark and e.context_mark.line != mark.line:
            problem += f" ({e.context} at line {e.context_mark.line + 1})"  # e.g. where a quote opened
        message = f"not valid YAML: {problem}{_hint(text, problem, line)}"
        raise SpecError(Problem("", message, Location(file, line)), source=file) from None
    except yaml.YAMLError as e:
        raise SpecError(Problem("", f"not valid YAML: {e}", Location(file)), source=file) from None
    except RecursionError:
        raise SpecError(Problem("", "not valid YAML: nested too deeply", Location(file)), source=file) from None
    except SpecError:
        raise
    except (ValueError, OverflowError) as e:  # a value the constructor cannot make (a 5000-digit integer)
        raise SpecError(Problem("", f"not valid YAML: {str(e)[:200]}", Location(file)), source=file) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, origins


def load_yaml_file(path: Path) -> tuple[Any, Origins]:
    try:
        if Path(path).stat().st_size > MAX_BYTES:
            raise SpecError(f"{Path(path).stat().st_size:,} bytes; a spec file is at most {MAX_BYTES:,}",
                            source=str(path))
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"no such spec file: {path}", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read spec file: {e}", source=str(path)) from None
    return load_yaml_text(text, str(path))


def parse_scalar(text: str, where: str = "<override>") -> Any:
    """A command-line override's value, read as YAML (`2` -> int, `1e-5` -> float, `[1,2]` -> list)
    with a spec file's limits (size, values, depth, plain data only); text that is not YAML is
    the string itself."""
    if not text.strip():
        return ""
    try:
        value, _ = load_yaml_text(text, where)
    except SpecError as e:
        if any("not valid YAML" in p.message for p in e.problems):
            return text
        raise
    return value


def locate(origins: Origins, path: KeyPath, source: str) -> Location:
    """Where `path` was written: its own origin, else its nearest written ancestor's, else the file."""
    for n in range(len(path), 0, -1):
        if path[:n] in origins:
            return origins[path[:n]]
    return Location(source)
