"""The spec catalog: every model YAML shipped in `zoo.specs`, and in the folders of the ZOO_PATH
environment variable (colon-separated, searched first), found by name."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .compiler.errors import Problem, SpecError, UnknownModelError, close_matches
from .compiler.frontend import RawSpec, SpecResolver, compile_spec, load_raw
from .compiler.schema import ModelSpec


def specs_root() -> Path:
    from . import specs

    return Path(specs.__file__).parent


def search_roots() -> list[Path]:
    """The folders specs and formats are found in: ZOO_PATH's (in order), then the package's.
    A folder's specs lie anywhere under it, its key maps in `formats/`, its transformers families
    in `formats/transformers/`."""
    user = [Path(p).expanduser() for p in os.environ.get("ZOO_PATH", "").split(os.pathsep) if p.strip()]
    return [*user, specs_root()]


def resolver() -> SpecResolver:
    return _resolver(tuple(search_roots()))


@functools.lru_cache(maxsize=8)
def _resolver(roots: tuple[Path, ...]) -> SpecResolver:
    return SpecResolver(list(roots))


@dataclass(frozen=True)
class Entry:
    name: str
    path: Path
    family: str | None
    description: str
    abstract: bool
    chain: tuple[str, ...] = ()  # the files it extends, itself first


def entries() -> tuple[Entry, ...]:
    """Every spec file in the catalog (family files included, marked abstract)."""
    return _entries(tuple(search_roots()))


@functools.lru_cache(maxsize=8)
def _entries(roots: tuple[Path, ...]) -> tuple[Entry, ...]:
    out = []
    for name, path in sorted(resolver().index().items()):
        raw = load_raw(path, resolver())
        out.append(Entry(name, path, raw.data.get("family"), str(raw.data.get("description", "")), raw.abstract,
                         tuple(raw.chain)))
    return tuple(out)


def model_names() -> list[str]:
    return [e.name for e in entries() if not e.abstract]


def find(name: str) -> Path:
    """The spec file for a catalog name (`llama-2-7b` or `llama/llama-2-7b`)."""
    try:
        path = resolver().find(name)
    except ValueError:  # a path (absolute, ..): not a catalog name
        path = None
    if path is None:
        raise UnknownModelError(name, model_names())
    return path


def load_raw_spec(name_or_path: str | Path) -> RawSpec:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return load_raw(p, SpecResolver([p.parent, *search_roots()], recursive=search_roots()))
    return load_raw(find(str(name_or_path)), resolver())


def sizes_of(path: Path) -> list[str]:
    """The loadable catalog models whose nearest family file is `path`."""
    abstract = {str(e.path.resolve()) for e in entries() if e.abstract}
    key = str(Path(path).resolve())
    out = []
    for e in entries():
        families = [f for f in (str(Path(f).resolve()) for f in e.chain[1:]) if f in abstract]
        if not e.abstract and families[:1] == [key]:
            out.append(e.name)
    return out


def get_spec(name_or_path: str | Path, overrides: Sequence[str] = ()) -> ModelSpec:
    """A validated spec from a catalog name or a YAML path, with dotted overrides applied."""
    raw = load_raw_spec(name_or_path)
    if raw.abstract:
        sizes = sizes_of(Path(raw.source))
        raise SpecError(Problem("abstract", "is a family file, not a loadable model: load one of its sizes",
                                raw.origins.get(("abstract",)),
                                suggestions=close_matches(Path(raw.source).stem, sizes) or sizes[:3]),
                        source=raw.source)
    return compile_spec(raw, overrides, name=Path(raw.source).stem)
