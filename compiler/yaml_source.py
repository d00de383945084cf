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


def _convert(node: yaml.Node, path: KeyPath, origins: Origins, file: str, loader: _Loader) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError(Problem(".".join(path), "keys must be plain scalars",
                                        Location(file, key_node.start_mark.line + 1)), source=file)
            key = str(loader.construct_object(key_node))
            sub = path + (key,)
            if key in out:
                raise SpecError(Problem(".".join(sub), "duplicate key",
                                        Location(file, key_node.start_mark.line + 1)), source=file)
            origins[sub] = Location(file, key_node.start_mark.line + 1)
            out[key] = _convert(value_node, sub, origins, file, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            origins[path + (str(i),)] = Location(file, item.start_mark.line + 1)
            items.append(_convert(item, path + (str(i),), origins, file, loader))
        return items
    return loader.construct_object(node, deep=True)


def load_yaml_text(text: str, file: str) -> tuple[Any, Origins]:
    """Parse YAML text; return the data and the origin of every key path."""
    loader = _Loader(text)
    origins: Origins = {}
    try:
        node = loader.get_single_node()
        data = {} if node is None else _convert(node, (), origins, file, loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise SpecError(Problem("", f"not valid YAML: {e.problem or e}", Location(file, line)), source=file) from None
    except yaml.YAMLError as e:
        raise SpecError(Problem("", f"not valid YAML: {e}", Location(file)), source=file) from None
    finally:
        loader.dispose()
    return data, origins


def load_yaml_file(path: Path) -> tuple[Any, Origins]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"no such spec file: {path}", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read spec file: {e}", source=str(path)) from None
    return load_yaml_text(text, str(path))


def parse_scalar(text: str) -> Any:
    """A command-line override's value, read as YAML (`2` -> int, `1e-5` -> float, `[1,2]` -> list)."""
    try:
        return yaml.load(text, Loader=_Loader) if text.strip() else ""
    except yaml.YAMLError:
        return text
