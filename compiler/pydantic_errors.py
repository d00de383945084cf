"""Turn pydantic's validation errors into `Problem`s a spec author can act on.

pydantic reports locations with discriminator tags mixed in (`arch.decoder.ffn.swiglu.x`);
these are walked against the data to recover the key path as written, then against the schema
to list the keys that *are* allowed there, for "did you mean".
"""

from __future__ import annotations

import re
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from . import registry
from .errors import Problem, close_matches
from .schema import FieldError, ModelSpec
from .yaml_source import KeyPath, Origins, locate


def _field_type(field: Any) -> Any:
    """A model field's type with its metadata (a Slot field's type is its kinds' union)."""
    slot = registry.slot_of(field.annotation, field.metadata)
    if slot is not None:
        return list(registry.kinds(slot.slot).values())
    return field.annotation


def _unwrap(tp: Any) -> list[Any]:
    """The model classes (or dict/list containers) a field annotation can hold."""
    if isinstance(tp, list):  # a Slot's kinds
        return list(tp)
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        slot = registry.slot_of(tp)
        if slot is not None:
            return list(registry.kinds(slot.slot).values())
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        out = []
        for a in typing.get_args(tp):
            out += _unwrap(a)
        return out
    return [tp]


def _step(tp: Any, key: str) -> tuple[Any, bool] | None:
    """Follow one loc element from a type; (next type, consumed-a-data-key)."""
    for cand in _unwrap(tp):
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            if key in cand.model_fields:
                return _field_type(cand.model_fields[key]), True
            tag = cand.model_fields.get("kind")
            if tag is not None and tag.default == key:
                return cand, False
        origin = typing.get_origin(cand)
        if origin in (dict, list, tuple):
            args = typing.get_args(cand)
            return (args[-1] if args else Any), True
    return None


def _walk(loc: tuple[Any, ...]) -> tuple[KeyPath, type[BaseModel] | None]:
    """Key path as written, and the model class that owns the last element."""
    tp: Any = ModelSpec
    owner: type[BaseModel] | None = ModelSpec
    path: list[str] = []
    for i, el in enumerate(loc):
        key = str(el)
        models = [c for c in _unwrap(tp) if isinstance(c, type) and issubclass(c, BaseModel)]
        nxt = _step(tp, key)
        if nxt is None:
            path.append(key)
            owner = models[0] if len(models) == 1 else None
            tp = Any
            continue
        tp, consumed = nxt
        if consumed:
            owner = models[0] if len(models) == 1 else owner
            path.append(key)
        else:
            owner = tp  # a discriminator tag selected this member
    return tuple(path), owner


def _fmt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def problems_from_validation(err: ValidationError, data: dict[str, Any], origins: Origins,
                             source: str) -> list[Problem]:
    problems: list[Problem] = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        path, owner = _walk(loc)
        dotted = ".".join(path)
        where = locate(origins, path, source)
        kind = e["type"]
        if kind == "extra_forbidden":
            allowed = sorted(owner.model_fields) if owner else []
            problems.append(Problem(dotted, "unknown key", where,
                                    expected="one of " + ", ".join(allowed) if allowed else None,
                                    suggestions=close_matches(path[-1], allowed)))
        elif kind == "union_tag_invalid":
            tags = [t.strip().strip("'") for t in str(e.get("ctx", {}).get("expected_tags", "")).split(",")]
            got = e.get("ctx", {}).get("tag")
            problems.append(Problem(dotted + ".kind" if dotted else "kind", f"unknown kind {got!r}", where,
                                    expected="one of " + ", ".join(tags), suggestions=close_matches(str(got), tags)))
        elif kind == "union_tag_not_found":
            problems.append(Problem(dotted, "needs a `kind`", where, expected="a mapping with a kind key"))
        elif kind == "missing":
            problems.append(Problem(dotted, "required key is missing", where))
        elif kind in ("value_error", "assertion_error"):
            error = e.get("ctx", {}).get("error", e["msg"])
            if isinstance(error, FieldError):  # a validator naming a key below the one it checks
                path = path + error.at
                dotted, where = ".".join(path), locate(origins, path, source)
            problems.append(Problem(dotted, str(error), where))
        elif kind == "literal_error":
            allowed = re.findall(r"'([^']*)'", str(e.get("ctx", {}).get("expected", "")))
            got = e.get("input")
            problems.append(Problem(dotted, f"{e['msg'][0].lower()}{e['msg'][1:]}, got {_fmt(got)}", where,
                                    suggestions=close_matches(got, allowed) if isinstance(got, str) else ()))
        else:
            problems.append(Problem(dotted, f"{e['msg'][0].lower()}{e['msg'][1:]}, got {_fmt(e.get('input'))}", where))
    return problems
