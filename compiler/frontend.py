"""YAML spec -> validated `ModelSpec`: `extends` chains, dotted overrides, omegaconf
interpolation, strict validation, and errors that point at file, line and key.

The order is fixed: resolve `extends` (child keys win, deep merge), apply overrides, resolve
interpolations, validate. Origins (which file and line gave each key) travel alongside the data
so that `zoo show --resolved` and every error can name them.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import omegaconf
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import ValidationError

from .errors import Location, Problem, SpecError, close_matches
from .paths import escape_reason
from .pydantic_errors import problems_from_validation
from .schema import ModelSpec
from .yaml_source import (
    MAX_DEPTH,
    KeyPath,
    Origins,
    load_yaml_file,
    load_yaml_text,
    locate,
    parse_scalar,
)

OVERRIDE = "<override>"
_NOT_INHERITED = ("abstract", "name")


def _number(x: Any, name: str, integer: bool = False) -> Any:
    """A resolver's argument as a number, or a clear error (never `'big' * 2 == 'bigbig'`)."""
    if isinstance(x, str):
        try:
            x = int(x)
        except ValueError:
            try:
                x = float(x)
            except ValueError:
                pass
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"{name}: expected a number, got {x!r}")
    if integer:
        if isinstance(x, float) and not x.is_integer():
            raise ValueError(f"{name}: expected an integer, got {x!r}")
        x = int(x)
    return x


def _div(a: Any, b: Any) -> int:
    """Exact integer division: `${div:${..dim},${.n_heads}}` with a remainder is a mistake, not
    a size to round down."""
    a, b = _number(a, "div", integer=True), _number(b, "div", integer=True)
    if b == 0:
        raise ValueError(f"div: division of {a} by zero")
    if a % b:
        raise ValueError(f"div: {a} is not divisible by {b}")
    return a // b


# The only resolvers a spec may call: specs are data, so no `oc.env` (a spec from elsewhere
# could copy a secret from the environment into a description that is then pushed).
RESOLVERS = {
    "div": _div,
    "mul": lambda a, b: _number(a, "mul") * _number(b, "mul"),
    "add": lambda a, b: _number(a, "add") + _number(b, "add"),
    "sub": lambda a, b: _number(a, "sub") - _number(b, "sub"),
}


def _register_resolvers() -> None:
    # omegaconf 2.4 renamed register_new_resolver to register_resolver (2.3's is the legacy one)
    new_api = tuple(int(x) for x in omegaconf.__version__.split(".")[:2]) >= (2, 4)
    register = OmegaConf.register_resolver if new_api else OmegaConf.register_new_resolver
    for name, fn in RESOLVERS.items():
        register(name, fn, replace=True)


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

    def __init__(self, roots: Sequence[Path] = (), recursive: Sequence[Path] | None = None):
        """`recursive`: the roots (catalogs) whose whole tree is searched by bare name; the
        others (such as the folder a user's file happens to be in) only by their own files.
        Default: all of them."""
        self.roots = [Path(r) for r in roots]
        self.recursive = {Path(r) for r in (roots if recursive is None else recursive)}
        self._by_stem: dict[str, Path] | None = None

    def index(self) -> dict[str, Path]:
        if self._by_stem is None:
            self._by_stem = {}
            for root in self.roots:
                for p in sorted(root.rglob("*.yaml") if root in self.recursive else root.glob("*.yaml")):
                    if "formats" in p.relative_to(root).parts:
                        continue
                    self._by_stem.setdefault(p.stem, p)
        return self._by_stem

    def find(self, ref: str, base: Path | None = None) -> Path | None:
        """The file `ref` names (None if there is none); ValueError when `ref` is a path that
        leaves the including file's folder (absolute, `..`, a symlink out)."""
        ref = str(ref)
        if ref.endswith((".yaml", ".yml")) or ref.startswith((".", "/")):
            folder = base.parent if base is not None else Path.cwd()
            why = escape_reason(folder, ref)
            if why:
                raise ValueError(f"{why}: `extends` names a catalog spec, or a file beside this one")
            p = folder / ref
            return p if p.is_file() else None
        for root in self.roots:
            p = root / f"{ref}.yaml"
            try:
                if p.is_file():
                    return p
            except (OSError, ValueError):  # a name the OS refuses (too long, a NUL byte)
                return None
        # a bare name is searched by file name; a name with `/` is exact (`alice/llama-2-7b` is a Hub
        # repo id, never the catalog's llama-2-7b)
        return None if "/" in ref else self.index().get(ref)


def _replaces(parent: Any, child: Any) -> bool:
    """Whether `child` merged over `parent` discards the parent's value whole."""
    if not (isinstance(parent, dict) and isinstance(child, dict)):
        return True
    return "kind" in child and "kind" in parent and child["kind"] != parent["kind"]


def _deep_merge(parent: Any, child: Any) -> Any:
    """Child wins. Dicts merge key by key, except a component whose `kind` changes: that is a
    different component, so the child's replaces the parent's whole."""
    if _replaces(parent, child):
        return copy.deepcopy(child)
    out = copy.deepcopy(parent)
    for k, v in child.items():
        out[k] = _deep_merge(parent[k], v) if k in parent else copy.deepcopy(v)
    return out


def _drop_below(origins: Origins, path: KeyPath) -> None:
    for p in [p for p in origins if len(p) > len(path) and p[: len(path)] == path]:
        del origins[p]


def _merge_origins(parent: Origins, parent_data: dict[str, Any], child: Origins,
                   child_data: dict[str, Any]) -> Origins:
    """The origins of `_deep_merge(parent_data, child_data)`: the child's keys, plus the
    parent's wherever the child merged into (rather than replaced) the parent's value."""
    out = dict(parent)
    for path in sorted(child, key=len):
        if _replaces(_get(parent_data, path), _get(child_data, path)):
            _drop_below(out, path)
        out[path] = child[path]
    return out


def _subpaths(value: Any, prefix: KeyPath) -> Iterable[KeyPath]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield prefix + (str(k),)
            yield from _subpaths(v, prefix + (str(k),))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield prefix + (str(i),)
            yield from _subpaths(v, prefix + (str(i),))


def _get(data: Any, path: KeyPath) -> Any:
    for k in path:
        if isinstance(data, dict) and k in data:
            data = data[k]
        elif isinstance(data, list) and k.isdigit() and int(k) < len(data):
            data = data[int(k)]
        else:
            return None
    return data


def _extended(resolver: SpecResolver, ref: str, base: Path | None, key: str, loc: Location | None, source: str,
              seen: tuple[str, ...]) -> Path:
    """The file an `extends:` names, or a SpecError: not found (with suggestions), outside the
    including file's folder, or a cycle."""
    try:
        path = resolver.find(ref, base)
    except ValueError as e:
        raise SpecError(Problem(key, str(e), loc), source=source) from None
    if path is None:
        raise SpecError(Problem(key, f"no spec named {ref!r}", loc,
                                suggestions=close_matches(Path(ref).name, resolver.index())), source=source)
    if str(path.resolve()) in seen:
        cycle = " -> ".join(Path(f).name for f in (*seen, str(path.resolve())))
        raise SpecError(Problem(key, f"extends cycle: {cycle}", loc), source=seen[0] if seen else source)
    return path


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
        return _expand_components(RawSpec(data, origins, source, [source]), resolver, seen, base)
    if not isinstance(parent_ref, str):
        raise SpecError(Problem("extends", "must be a spec name or path", ext_loc, expected="a string"), source=source)
    parent = load_raw(_extended(resolver, parent_ref, base, "extends", ext_loc, source, seen), resolver, seen)
    for k in _NOT_INHERITED:
        parent.data.pop(k, None)
        parent.origins.pop((k,), None)
    merged = _deep_merge(parent.data, data)
    return _expand_components(RawSpec(merged, _merge_origins(parent.origins, parent.data, origins, data), source,
                                      [source] + parent.chain), resolver, seen, base)


def _expand_components(raw: RawSpec, resolver: SpecResolver, seen: tuple[str, ...], base: Path | None) -> RawSpec:
    """`extends: NAME` in a component directly under `arch` (a vision-language model's
    `arch.text`) starts that component from model NAME's `arch`, resolved with its own chain;
    the component's other keys win (deep merge). Origins keep pointing at NAME's file."""
    arch = raw.data.get("arch")
    if not isinstance(arch, dict):
        return raw
    for key, comp in list(arch.items()):
        if not (isinstance(comp, dict) and "extends" in comp):
            continue
        at = ("arch", str(key))
        comp = dict(comp)
        ref = comp.pop("extends")
        loc = raw.origins.pop(at + ("extends",), None)
        if not isinstance(ref, str):
            raise SpecError(Problem(".".join(at + ("extends",)), "must be a spec name or path", loc,
                                    expected="a string"), source=raw.source)
        other = load_raw(_extended(resolver, ref, base, ".".join(at + ("extends",)), loc, raw.source, seen), resolver,
                         seen)
        base_arch = other.data.get("arch")
        if not isinstance(base_arch, dict):
            raise SpecError(Problem(".".join(at + ("extends",)), f"spec {ref!r} has no arch to start from", loc),
                            source=raw.source)
        moved = {at + p[1:]: where for p, where in other.origins.items() if p[:1] == ("arch",) and len(p) > 1}
        mine = {p: where for p, where in raw.origins.items() if p[:2] == at}
        merged_origins = _merge_origins(moved, {"arch": {key: base_arch}}, mine, {"arch": {key: comp}})
        raw.origins = {p: where for p, where in raw.origins.items() if p[:2] != at}
        raw.origins.update(merged_origins)
        raw.origins.setdefault(at, loc or Location(raw.source))
        arch[key] = _deep_merge(base_arch, comp)
    return raw


MAX_OVERRIDES = 1000


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def apply_overrides(raw: RawSpec, overrides: Iterable[str]) -> RawSpec:
    """Dotted overrides `arch.n_layers=2` (values read as YAML), applied after `extends`."""
    data, origins = copy.deepcopy(raw.data), dict(raw.origins)
    overrides = list(overrides)
    if len(overrides) > MAX_OVERRIDES:
        raise SpecError(Problem("", f"{len(overrides):,} overrides; at most {MAX_OVERRIDES:,}", Location(OVERRIDE)),
                        source=raw.source)
    for item in overrides:
        if not isinstance(item, str):
            raise SpecError(Problem("", f"an override is a KEY.PATH=VALUE string, got {type(item).__name__}",
                                    Location(OVERRIDE)), source=raw.source)
        if "=" not in item:
            raise SpecError(Problem(item, "an override is KEY.PATH=VALUE (no '=' found)", Location(OVERRIDE)),
                            source=raw.source)
        dotted, text = item.split("=", 1)
        path = tuple(p.strip() for p in dotted.strip().split("."))
        if not dotted.strip() or not all(path):
            raise SpecError(Problem(item, "an override is KEY.PATH=VALUE, with no empty keys in KEY.PATH",
                                    Location(OVERRIDE)), source=raw.source)
        node = data
        for i, k in enumerate(path[:-1]):
            nxt = node.get(k)
            if nxt is None:
                nxt = node[k] = {}
            if not isinstance(nxt, dict):
                kind = type(nxt).__name__
                raise SpecError(Problem(".".join(path[: i + 1]), f"is {'an' if kind[0] in 'aeiou' else 'a'} {kind} "
                                        f"({nxt!r}), so {'.'.join(path)} cannot be set below it", Location(OVERRIDE),
                                        expected="a mapping"), source=raw.source)
            node = nxt
        value = parse_scalar(text)
        if len(path) + _depth(value) > MAX_DEPTH:
            raise SpecError(Problem(".".join(path[:3]) + ".…", f"nested more than {MAX_DEPTH} levels deep",
                                    Location(OVERRIDE)), source=raw.source)
        old = node.get(path[-1])
        node[path[-1]] = _deep_merge(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
        if _replaces(old, value):
            _drop_below(origins, path)
        for p in (path, *_subpaths(value, path)):
            origins[p] = Location(OVERRIDE)
    return RawSpec(data, origins, raw.source, raw.chain)


_RAISED = re.compile(r"^\w+ raised while resolving interpolation: ")
_MISSING_KEY = re.compile(r"Interpolation key '([^']*)' not found(?: \(resolved to '([^']*)'\))?")
_RESOLVER_CALL = re.compile(r"\$\{\s*([\w.\-]+)\s*:")


def _interpolation_problem(e: OmegaConfBaseException, path: KeyPath, raw: RawSpec) -> Problem:
    msg = _RAISED.sub("", str(getattr(e, "msg", None) or e).splitlines()[0])
    written = _get(raw.data, path)
    what = f"interpolation {written!r}" if isinstance(written, str) and "${" in written else "interpolation"
    suggestions: list[str] = []
    if written == "???":  # omegaconf's "mandatory value": a family file leaving a size to its children
        return Problem(".".join(path), "value is missing (???): set it in a child spec or with an override",
                       locate(raw.origins, path, raw.source))
    m = _MISSING_KEY.search(msg)
    if m:  # a typo among the missing key's siblings
        *parent, last = (m.group(2) or m.group(1)).split(".")
        siblings = [p[-1] for p in _subpaths(raw.data, ()) if list(p[:-1]) == parent]
        suggestions = [".".join([*parent, s]) for s in close_matches(last, siblings)]
    return Problem(".".join(path), f"{what} failed: {msg}", locate(raw.origins, path, raw.source),
                   suggestions=suggestions)


def _resolve_node(node: DictConfig | ListConfig, path: KeyPath, raw: RawSpec, problems: list[Problem]) -> Any:
    keys = list(range(len(node))) if isinstance(node, ListConfig) else list(node.keys())
    out: dict[str, Any] | list[Any] = [] if isinstance(node, ListConfig) else {}
    for k in keys:
        sub = path + (str(k),)
        try:
            value = node[k]
        except OmegaConfBaseException as e:
            problems.append(_interpolation_problem(e, sub, raw))
            value = None
            if isinstance(out, dict):
                continue  # left out: validation then says nothing more about this key
        if isinstance(value, (DictConfig, ListConfig)):
            value = _resolve_node(value, sub, raw, problems)
        if isinstance(out, list):
            out.append(value)
        else:
            out[str(k)] = value
    return out


def _resolve(raw: RawSpec) -> tuple[dict[str, Any], list[Problem]]:
    """Resolve `${...}` interpolations. A key whose interpolation fails is reported and left out,
    so that validation can still report everything else (often the real cause)."""
    problems = []
    for path in _subpaths(raw.data, ()):
        value = _get(raw.data, path)
        for name in _RESOLVER_CALL.findall(value) if isinstance(value, str) else ():
            if name not in RESOLVERS:
                problems.append(Problem(".".join(path), f"unknown resolver {name!r} in {value!r}",
                                        locate(raw.origins, path, raw.source),
                                        expected="one of " + ", ".join(RESOLVERS),
                                        suggestions=close_matches(name, RESOLVERS)))
    if problems:
        raise SpecError(problems, source=raw.source)
    try:
        conf = OmegaConf.create(raw.data)
    except OmegaConfBaseException as e:  # yaml_source admits only plain values, so this is unexpected
        raise SpecError(_interpolation_problem(e, tuple(str(getattr(e, "full_key", "") or "").split(".")), raw),
                        source=raw.source) from None
    try:
        out = OmegaConf.to_container(conf, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as e:
        problems = []
        out = _resolve_node(conf, (), raw, problems)  # again key by key, to report every failure
        if not problems:
            key = tuple(str(getattr(e, "full_key", "") or "").split("."))
            raise SpecError(_interpolation_problem(e, key, raw), source=raw.source) from None
    assert isinstance(out, dict)
    return out, problems


def interpolate(raw: RawSpec) -> dict[str, Any]:
    """Resolve `${...}` interpolations with omegaconf; errors name the key and the expression."""
    data, problems = _resolve(raw)
    if problems:
        raise SpecError(problems, source=raw.source)
    return data


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
    data, problems = _resolve(raw)
    try:
        spec = validate(data, raw, name=name)
    except SpecError as e:
        # a key whose interpolation failed was left out: say nothing more about it, nor about the
        # component holding it (e.g. "give head_dim" when head_dim's interpolation failed)
        failed = [p.path for p in problems]
        problems += [p for p in e.problems
                     if not any(p.path == f or p.path.startswith(f + ".") or f.startswith(p.path + ".")
                                and "." not in f[len(p.path) + 1:] for f in failed)]
    if problems:
        raise SpecError(problems, source=raw.source)
    return spec


def spec_from_file(path: str | Path, overrides: Sequence[str] = (), resolver: SpecResolver | None = None) -> ModelSpec:
    path = Path(path)
    resolver = resolver or SpecResolver([path.parent], recursive=())
    return compile_spec(load_raw(path, resolver), overrides, name=path.stem)


def spec_from_text(text: str, overrides: Sequence[str] = (), resolver: SpecResolver | None = None,
                   source: str = "<string>") -> ModelSpec:
    return compile_spec(load_raw_text(text, resolver or SpecResolver(), source), overrides)


def override_spec(spec: ModelSpec, overrides: Sequence[str]) -> ModelSpec:
    """`spec` with dotted overrides applied (validated again, interpolations already resolved)."""
    if not overrides:
        return spec
    return compile_spec(RawSpec(spec.model_dump(mode="json"), {}, f"<{spec.name}>"), overrides)
