"""Tools as plain Python functions: the JSON schema a chat template shows the model is derived
from the signature (type hints) and a Google-style docstring, the way transformers'
`get_json_schema` does for `apply_chat_template(tools=[fn])`, or given explicitly.

    def get_weather(city: str, unit: str = "C") -> str:
        \"\"\"The weather in a city.

        Args:
            city: the city's name
            unit: C or F
        \"\"\"

    Tool(get_weather).schema == {"type": "function", "function": {"name": "get_weather",
        "description": "The weather in a city.", "parameters": {"type": "object", "properties":
        {"city": {"type": "string", "description": "the city's name"}, ...}, "required": ["city"]},
        "return": {"type": "string"}}}
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..runtime.errors import UsageError

_SIMPLE = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}
_ARGS = re.compile(r"^\s*(Args|Arguments|Parameters)\s*:\s*$", re.MULTILINE)
_END = re.compile(r"^\s*(Returns?|Raises|Yields|Examples?|Notes?)\s*:", re.MULTILINE)


def _type_schema(hint: Any, where: str) -> dict[str, Any]:
    if hint in _SIMPLE:
        return {"type": _SIMPLE[hint]}
    if hint is Any:
        return {}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        out = _type_schema(rest[0], where) if len(rest) == 1 else {"type": [
            _type_schema(a, where).get("type", "object") for a in rest]}
        if len(rest) < len(args):
            out["nullable"] = True
        return out
    if origin is typing.Literal:
        kinds = sorted({_SIMPLE.get(type(a), "string") for a in args})
        return {"type": kinds[0] if len(kinds) == 1 else kinds, "enum": list(args)}
    if hint is list or origin is list:
        return {"type": "array", **({"items": _type_schema(args[0], where)} if args else {})}
    if hint is tuple or origin is tuple:
        out = {"type": "array"}
        if args and args[-1] is not Ellipsis:
            out["prefixItems"] = [_type_schema(a, where) for a in args]
        elif args:
            out["items"] = _type_schema(args[0], where)
        return out
    if hint is dict or origin is dict:
        out = {"type": "object"}
        if len(args) == 2:
            out["additionalProperties"] = _type_schema(args[1], where)
        return out
    raise UsageError(f"{where}: no JSON-schema type for {hint!r} (use str, int, float, bool, list, dict, "
                     f"Optional, Literal, or give the tool's schema explicitly)")


def _docstring(doc: str) -> tuple[str, dict[str, str], str | None]:
    """(description, {argument: description}, returns description) of a Google-style docstring."""
    doc = inspect.cleandoc(doc or "")
    m = _ARGS.search(doc)
    end = _END.search(doc, m.end() if m else 0)
    head = doc[:m.start() if m else (end.start() if end else len(doc))].strip()
    params: dict[str, str] = {}
    if m:
        block = doc[m.end():end.start() if end else len(doc)]
        name = None
        for line in block.splitlines():
            hit = re.match(r"^\s*(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$", line)
            if hit:
                name, params[hit.group(1)] = hit.group(1), hit.group(2).strip()
            elif name and line.strip():
                params[name] = (params[name] + " " + line.strip()).strip()
    returns = None
    if end and end.group(1).startswith("Return"):
        returns = doc[end.end():].strip().split("\n\n")[0].strip() or None
    return head, params, returns


def function_schema(fn: Callable[..., Any], name: str | None = None, description: str | None = None) -> dict[str, Any]:
    """The `{"type": "function", "function": {...}}` schema of a Python function."""
    if not callable(fn):
        raise UsageError(f"a tool is a Python function (or a schema dict), got {type(fn).__name__}")
    fname = name or getattr(fn, "__name__", None)
    if not fname or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", fname):
        raise UsageError(f"tool name {fname!r}: letters, digits, _ and -, not starting with a digit")
    try:
        hints = typing.get_type_hints(fn)
    except Exception as e:  # an annotation that does not resolve
        raise UsageError(f"tool {fname}: its type hints do not resolve ({e})") from None
    head, docs, returns = _docstring(inspect.getdoc(fn) or "")
    props: dict[str, Any] = {}
    required = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name not in hints:
            raise UsageError(f"tool {fname}: argument {p.name!r} has no type hint (the model is shown its type)")
        props[p.name] = _type_schema(hints[p.name], f"tool {fname}, argument {p.name!r}")
        if p.name in docs:
            props[p.name]["description"] = docs[p.name]
        if p.default is inspect.Parameter.empty:
            required.append(p.name)
    params: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        params["required"] = required
    out: dict[str, Any] = {"name": fname, "description": description if description is not None else head,
                           "parameters": params}
    if "return" in hints and hints["return"] is not type(None):
        out["return"] = _type_schema(hints["return"], f"tool {fname}, return")
        if returns:
            out["return"]["description"] = returns
    return {"type": "function", "function": out}


def check_schema(schema: Any) -> dict[str, Any]:
    """A tool schema given as a dict: `{"type": "function", "function": {"name": ...}}` (or the
    inner function dict alone); UsageError naming what is missing."""
    if not isinstance(schema, Mapping):
        raise UsageError(f"a tool schema is a dict, got {type(schema).__name__}")
    fn = schema.get("function") if "function" in schema else schema
    if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
        raise UsageError("a tool schema is {'type': 'function', 'function': {'name': ..., 'description': ..., "
                         "'parameters': {...}}}")
    return dict(schema) if "function" in schema else {"type": "function", "function": dict(fn)}


@dataclass
class Tool:
    """A function the model may call: its schema (derived from the function, or given) and the
    function that runs a call (`fn(**arguments)`; None for a tool that is only shown)."""

    fn: Callable[..., Any] | None
    schema: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.schema = check_schema(self.schema) if self.schema else function_schema(self.fn)  # type: ignore[arg-type]

    @property
    def name(self) -> str:
        return str(self.schema["function"]["name"])

    def __call__(self, **arguments: Any) -> Any:
        if self.fn is None:
            raise UsageError(f"tool {self.name} has a schema but no function to run")
        return self.fn(**arguments)


def as_tool(obj: Any) -> Tool:
    """A Tool from a Tool, a function, or a schema dict (shown to the model, not runnable)."""
    if isinstance(obj, Tool):
        return obj
    if isinstance(obj, Mapping):
        return Tool(None, check_schema(obj))
    return Tool(obj)


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None,
         schema: Mapping[str, Any] | None = None) -> Any:
    """Make a Tool of a function, as a call or a decorator (`@tool`, `@tool(name=...)`)."""
    def make(f: Callable[..., Any]) -> Tool:
        return Tool(f, check_schema(schema) if schema is not None else function_schema(f, name, description))
    return make(fn) if fn is not None else make
