"""How a family writes tools, tool calls and tool results as text: the `syntax` a chat
template's `tools:` section names (specs/formats/chat/*.yaml); the template holds the special
tokens and placement, zoo/chat.py lays them out. Each syntax also reads the model's calls back
out of its reply.

- `mistral-v3` (mistral-common's InstructTokenizerV3): the tool list as one-line JSON
  (`{"type", "function": {"name", "description", "parameters"}}` each), calls as a JSON list of
  `{"name", "arguments", "id"}`, a result as `{"content", "call_id"}` whose content is parsed as
  JSON where it is JSON.
- `llama-3.1-json` (the Llama 3.1 Instruct template, custom tools): each tool as JSON indented
  by 4 and followed by a blank line, one call as `{"name": ..., "parameters": {...}}`, a result
  written as a JSON string.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Mapping, Sequence
from typing import Any

from ..runtime.errors import UsageError, ZooError
from .schema import as_tool


class ToolCallError(ZooError, ValueError):
    """The model marked a tool call but what it wrote is not one (the text is in the message)."""


def _dumps(value: Any, **kw: Any) -> str:
    return json.dumps(value, ensure_ascii=False, **kw)


def _schemas(tools: Sequence[Any]) -> list[dict[str, Any]]:
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        raise UsageError(f"tools is a list of functions, zoo.tools.Tool or schema dicts, got {type(tools).__name__}")
    return [as_tool(t).schema for t in tools]


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as e:
            raise ToolCallError(f"tool call arguments are not JSON ({e}): {raw!r}") from None
    if not isinstance(raw, Mapping):
        raise ToolCallError(f"tool call arguments must be a JSON object, got {raw!r}")
    return dict(raw)


def new_call_id() -> str:
    """A call id of 9 letters and digits (what mistral-common's v3 accepts)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(9))


class Syntax:
    name = ""
    #: whether each call carries an id that its result repeats
    uses_ids = False

    def tools(self, tools: Sequence[Any]) -> str:
        raise NotImplementedError

    def calls(self, calls: Sequence[Mapping[str, Any]]) -> str:
        raise NotImplementedError

    def result(self, content: str, call_id: str | None, name: str | None) -> str:
        raise NotImplementedError

    def parse(self, text: str, marked: bool) -> list[dict[str, Any]] | None:
        """The calls in a reply's text ([{"id", "name", "arguments"}]), or None for a plain
        answer. `marked`: the reply held the template's call token (then it must be calls)."""
        raise NotImplementedError


SYNTAXES: dict[str, Syntax] = {}


def register(cls: type[Syntax]) -> type[Syntax]:
    SYNTAXES[cls.name] = cls()
    return cls


def get_syntax(name: Any) -> Syntax:
    if name not in SYNTAXES:
        raise UsageError(f"unknown tool-call syntax {name!r} (a chat template's tools.syntax); "
                         f"one of: {', '.join(sorted(SYNTAXES))}")
    return SYNTAXES[name]


@register
class MistralV3(Syntax):
    name = "mistral-v3"
    uses_ids = True

    def tools(self, tools: Sequence[Any]) -> str:
        out = []
        for s in _schemas(tools):
            fn = s["function"]
            out.append({"type": "function", "function": {"name": fn["name"], "description": fn.get("description", ""),
                                                          "parameters": fn.get("parameters", {})}})
        return _dumps(out)

    def calls(self, calls: Sequence[Mapping[str, Any]]) -> str:
        out = []
        for c in calls:
            item = {"name": c["name"], "arguments": dict(c["arguments"])}
            if c.get("id") not in (None, "null"):
                item["id"] = c["id"]
            out.append(item)
        return _dumps(out)

    def result(self, content: str, call_id: str | None, name: str | None) -> str:
        if call_id is None:
            raise UsageError("a tool result needs the id of its call in this format (tool_call_id)")
        try:
            value: Any = json.loads(content)
        except json.JSONDecodeError:
            value = content
        return _dumps({"content": value, "call_id": call_id})

    def parse(self, text: str, marked: bool) -> list[dict[str, Any]] | None:
        if not marked:
            return None
        try:
            value = json.loads(text.strip())
        except json.JSONDecodeError as e:
            raise ToolCallError(f"the model's tool calls are not JSON ({e}): {text!r}") from None
        items = [value] if isinstance(value, Mapping) else value
        if not isinstance(items, list) or not items:
            raise ToolCallError(f"the model's tool calls are not a list of calls: {text!r}")
        calls = []
        for item in items:
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
                raise ToolCallError(f"a tool call needs a name: {item!r}")
            call_id = item.get("id")
            calls.append({"id": call_id if isinstance(call_id, str) and call_id != "null" else new_call_id(),
                          "name": item["name"], "arguments": _arguments(item.get("arguments", {}))})
        return calls


@register
class Llama31Json(Syntax):
    name = "llama-3.1-json"

    def tools(self, tools: Sequence[Any]) -> str:
        return "".join(_dumps(s, indent=4) + "\n\n" for s in _schemas(tools))

    def calls(self, calls: Sequence[Mapping[str, Any]]) -> str:
        if len(calls) != 1:
            raise UsageError(f"Llama 3.1 takes one tool call per assistant message, got {len(calls)}")
        return '{"name": "' + calls[0]["name"] + '", "parameters": ' + _dumps(dict(calls[0]["arguments"])) + "}"

    def result(self, content: str, call_id: str | None, name: str | None) -> str:
        return _dumps(content)  # the official template writes a string result with `tojson`

    def parse(self, text: str, marked: bool) -> list[dict[str, Any]] | None:
        body = text.strip()
        if not body.startswith("{"):
            if marked:
                raise ToolCallError(f"the model's tool call is not JSON: {text!r}")
            return None
        try:
            value = json.loads(body)
        except json.JSONDecodeError as e:
            if marked:
                raise ToolCallError(f"the model's tool call is not JSON ({e}): {text!r}") from None
            return None  # a reply that happens to start with a brace
        if not isinstance(value, Mapping) or not isinstance(value.get("name"), str) or not (
                "parameters" in value or "arguments" in value):
            if marked:
                raise ToolCallError(f"a tool call is {{\"name\": ..., \"parameters\": {{...}}}}, got {text!r}")
            return None
        return [{"id": None, "name": value["name"],
                 "arguments": _arguments(value.get("parameters", value.get("arguments", {})))}]
