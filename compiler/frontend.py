"""YAML spec -> validated `ModelSpec`: `extends` chains, dotted overrides, omegaconf
interpolation, strict validation, and errors that point at file, line and key.

The order is fixed: resolve `extends` (child keys win, deep merge), apply overrides, resolve
interpolations, validate. Origins (which file and line gave each key) travel alongside the data
so that `zoo show --resolved` and every error can name them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import ValidationError

from .errors import Location, Problem, SpecError
from .pydantic_errors import problems_from_validation
from .schema import ModelSpec
from .yaml_source import KeyPath, Origins, load_yaml_file, load_yaml_text, parse_scalar

OVERRIDE = "<override>"
_NOT_INHERITED = ("abstract", "name")


def _register_resolvers() -> None:
    def div(a: Any, b: Any) -> int:
        a, b = int(a), int(b)
        if b == 0:
            raise ValueError("division by zero")
        return a // b

    for name, fn in {
        "div": div,
        "mul": lambda a, b: a * b,
        "add": lambda a, b: a + b,
        "sub": lambda a, b: a - b,
    }.items():
        if not OmegaConf.has_resolver(name):
            register = getattr(OmegaConf, "register_resolver", None) or OmegaConf.register_new_resolver
            register(name, fn)


_register_resolvers()


@dataclass
class RawSpec:
    """A spec after `extends` and overrides, before interpolation and validation."""

    data: dict[str, Any]
    origins: Origins
    source: str
    chain: list[str] = field(default_factory=list)  # files, child first

    @property
    def abstract(self) -> bool:
        return bool(self.data.get("abstract", False))


class SpecResolver:
    """Finds the file an `extends:` reference names: a path relative to the including file, or
    a catalog name (`llama/llama-2` or just `llama-2`) under the search roots."""

    def __init__(self, roots: Sequence[Path] = ()):
        self.roots = [Path(r) for r in roots]
        self._by_stem: dict[str, Path] | None = None

    def index(self) -> dict[str, Path]:
        if self._by_stem is None:
            self._by_stem = {}
            for root in self.roots:
                for p in sorted(root.rglob("*.yaml")):
                    if "formats" in p.relative_to(root).parts:
                        continue
                    self._by_stem.setdefault(p.stem, p)
        return self._by_stem

    def find(self, ref: str, base: Path | None = None) -> Path | None:
        ref = str(ref)
        if ref.endswith((".yaml", ".yml")) or ref.startswith((".", "/")):
            p = Path(ref)
            if not p.is_absolute() and base is not None:
                p = base.parent / p
            return p if p.is_file() else None
        for root in self.roots:
            p = root / f"{ref}.yaml"
            if p.is_file():
                return p
        return self.index().get(Path(ref).name)


def _deep_merge(parent: Any, child: Any) -> Any:
    """Child wins. Dicts merge key by key, except a component whose `kind` changes: that is a
    different component, so the child's replaces the parent's whole."""
    if isinstance(parent, dict) and isinstance(child, dict):
        if "kind" in child and "kind" in parent and child["kind"] != parent["kind"]:
            return copy.deepcopy(child)
        out = copy.deepcopy(parent)
        for k, v in child.items():
            out[k] = _deep_merge(parent[k], v) if k in parent else copy.deepcopy(v)
        return out
    return copy.deepcopy(child)


def _merge_origins(parent: Origins, child: Origins, child_data: dict[str, Any]) -> Origins:
    out = dict(parent)
    for path, loc in child.items():
        # a child value that replaces a whole subtree drops the parent's origins below it
        value = _get(child_data, path)
        if not isinstance(value, dict) or (isinstance(value, dict) and "kind" in value):
            for p in [p for p in out if p[: len(path)] == path and len(p) > len(path)]:
                if p not in child:
                    del out[p]
        out[path] = loc
    return out


def _get(data: Any, path: KeyPath) -> Any:
    for k in path:
        if isinstance(data, dict) and k in data:
            data = data[k]
        elif isinstance(data, list) and k.isdigit() and int(k) < len(data):
            data = data[int(k)]
        else:
            return None
    return data


def load_raw(path: Path, resolver: SpecResolver, _seen: tuple[str, ...] = ()) -> RawSpec:
    """Read one spec file and everything it extends, merged, with origins."""
    path = Path(path)
    key = str(path.resolve())
    if key in _seen:
        cycle = " -> ".join(Path(s).name for s in _seen + (key,))
        raise SpecError(Problem("extends", f"extends cycle: {cycle}", Location(str(path))), source=str(path))
    data, origins = load_yaml_file(path)
    return _resolve_extends(data, origins, str(path), resolver, _seen + (key,), base=path)


def load_raw_text(text: str, resolver: SpecResolver, source: str = "<string>") -> RawSpec:
    data, origins = load_yaml_text(text, source)
    return _resolve_extends(data, origins, source, resolver, (), base=None)


def _resolve_extends(data: Any, origins: Origins, source: str, resolver: SpecResolver,
                     seen: tuple[str, ...], base: Path | None) -> RawSpec:
    if not isinstance(data, dict):
        raise SpecError(Problem("", f"a spec is a mapping of keys, got {type(data).__name__}", Location(source, 1)),
                        source=source)
    parent_ref = data.pop("extends", None)
    ext_loc = origins.pop(("extends",), None)
    if parent_ref is None:
        return RawSpec(data, origins, source, [source])
    if not isinstance(parent_ref, str):
        raise SpecError(Problem("extends", "must be a spec name or path", ext_loc, expected="a string"), source=source)
    parent_path = resolver.find(parent_ref, base)
    if parent_path is None:
        from .errors import close_matches

        raise SpecError(Problem("extends", f"no spec named {parent_ref!r}", ext_loc,
                                suggestions=close_matches(Path(parent_ref).name, resolver.index())), source=source)
    parent = load_raw(parent_path, resolver, seen)
    for k in _NOT_INHERITED:
        parent.data.pop(k, None)
        parent.origins.pop((k,), None)
    merged = _deep_merge(parent.data, data)
    return RawSpec(merged, _merge_origins(parent.origins, origins, data), source, [source] + parent.chain)


def apply_overrides(raw: RawSpec, overrides: Iterable[str]) -> RawSpec:
    """Dotted overrides `arch.n_layers=2` (values read as YAML), applied after `extends`."""
    data, origins = copy.deepcopy(raw.data), dict(raw.origins)
    for item in overrides:
        if "=" not in item:
            raise SpecError(Problem(item, "an override is KEY.PATH=VALUE", Location(OVERRIDE)), source=raw.source)
        dotted, text = item.split("=", 1)
        path = tuple(p for p in dotted.strip().split(".") if p)
        if not path:
            raise SpecError(Problem(item, "empty key path", Location(OVERRIDE)), source=raw.source)
        node = data
        for i, k in enumerate(path[:-1]):
            nxt = node.get(k) if isinstance(node, dict) else None
            if nxt is None:
                nxt = node[k] = {}
            if not isinstance(nxt, dict):
                raise SpecError(Problem(".".join(path[: i + 1]), f"is a {type(nxt).__name__}, cannot set "
                                        f"{'.'.join(path)} below it", Location(OVERRIDE)), source=raw.source)
            node = nxt
        value = parse_scalar(text)
        old = node.get(path[-1])
        node[path[-1]] = _deep_merge(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
        for p in [p for p in origins if p[: len(path)] == path and len(p) > len(path)]:
            if not isinstance(value, dict):
                del origins[p]
        origins[path] = Location(OVERRIDE)
    return RawSpec(data, origins, raw.source, raw.chain)


def interpolate(raw: RawSpec) -> dict[str, Any]:
    """Resolve `${...}` interpolations with omegaconf; errors name the key."""
    try:
        conf = OmegaConf.create(raw.data)
        out = OmegaConf.to_container(conf, resolve=True)
    except OmegaConfBaseException as e:
        key = str(getattr(e, "full_key", "") or "")
        msg = str(getattr(e, "msg", None) or e).splitlines()[0]
        loc = raw.origins.get(tuple(key.split("."))) if key else None
        raise SpecError(Problem(key, f"interpolation failed: {msg}", loc or Location(raw.source)),
                        source=raw.source) from None
    assert isinstance(out, dict)
    return out


def validate(data: dict[str, Any], raw: RawSpec, name: str | None = None) -> ModelSpec:
    data = {k: v for k, v in data.items() if k != "abstract"}
    if name and "name" not in data:
        data["name"] = name
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(problems_from_validation(e, data, raw.origins, raw.source), source=raw.source) from None


def compile_spec(raw: RawSpec, overrides: Sequence[str] = (), name: str | None = None) -> ModelSpec:
    """The whole frontend after loading: overrides, interpolation, validation."""
    if raw.abstract:
        raise SpecError(Problem("abstract", "is a family file, not a loadable model: load one of its sizes",
                                raw.origins.get(("abstract",))), source=raw.source)
    raw = apply_overrides(raw, overrides)
    return validate(interpolate(raw), raw, name=name)


def spec_from_file(path: str | Path, overrides: Sequence[str] = (), resolver: SpecResolver | None = None) -> ModelSpec:
    path = Path(path)
    resolver = resolver or SpecResolver([path.parent])
    return compile_spec(load_raw(path, resolver), overrides, name=path.stem)


def spec_from_text(text: str, overrides: Sequence[str] = (), resolver: SpecResolver | None = None,
                   source: str = "<string>") -> ModelSpec:
    return compile_spec(load_raw_text(text, resolver or SpecResolver(), source), overrides)
