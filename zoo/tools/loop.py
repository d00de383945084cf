"""The tool loop: render the conversation with the tools in the model's own format, generate,
read the model's tool calls out of its reply, run them, append the calls and their results,
and generate again until the model answers in text; at most `max_steps` rounds of calls.

    answer = m.chat(messages, tools=[zoo.tools.python])
    run = zoo.tools.run(m, messages, tools=[zoo.tools.python, get_weather])
    run.answer, run.messages, run.steps

A tool that raises, or a call to a tool that does not exist, becomes an error result the model
sees (it may try again); the loop itself raises only ToolStepLimit (the model still calling
tools after `max_steps` rounds, the transcript attached) and ToolCallError (a reply marked as
calls that is not one).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..chat import (
    chat_spec,
    load_template,
    render_chat,
    special_token_id,
    stops,
    tool_format,
)
from ..runtime.errors import UsageError, ZooError
from ..textstream import truncate_at_stop
from .formats import new_call_id
from .schema import Tool, as_tool


class ToolStepLimit(ZooError, RuntimeError):
    """The model was still calling tools after `max_steps` rounds; `.messages` is the transcript."""

    def __init__(self, message: str, messages: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.messages = messages


@dataclass
class ToolRun:
    """The model's final answer, the whole conversation (tool calls and results included) and
    the number of rounds of tool calls it took."""

    answer: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0


def _result_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def call_tool(tools: Mapping[str, Tool], name: str, arguments: Mapping[str, Any]) -> str:
    """What one call returns, as the text the model is shown; failures become error text."""
    found = tools.get(name)
    if found is None:
        return f"error: no tool named {name!r}; the tools are: {', '.join(sorted(tools))}"
    try:
        return _result_text(found(**arguments))
    except Exception as e:  # the model sees what went wrong, as a tool's result
        return f"error: {type(e).__name__}: {e}"


def _generate(model: Any, ids: list[int], max_new_tokens: int, stop_ids: list[int], sampling: dict[str, Any]) -> list[int]:
    tok = model._need_tokenizer()
    pad = tok.pad_id if getattr(tok, "pad_id", None) not in (None, -1) else 0
    out = model.generate([ids], max_new_tokens=max_new_tokens, stop_tokens=stop_ids, pad_id=pad, **sampling)[0]
    return [int(t) for t in out]


def run(model: Any, messages: Sequence[Mapping[str, Any]], tools: Sequence[Any], max_new_tokens: int = 256, *,
        max_steps: int = 8, stop: str | Sequence[str] | None = None, **sampling: Any) -> ToolRun:
    """Talk with tools until the model answers (see the module doc). `sampling`: temperature,
    top_k, top_p, seed, as for generate."""
    if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 0:
        raise UsageError(f"max_steps must be an integer >= 0, got {max_steps!r}")
    tok = model._need_tokenizer()
    spec, name = model.spec.tokenizer, model.spec.name
    fmt, syntax = tool_format(load_template(chat_spec(spec, name).template))
    registry: dict[str, Tool] = {}
    for t in tools:
        tool = as_tool(t)
        if tool.name in registry:
            raise UsageError(f"two tools are named {tool.name!r}")
        registry[tool.name] = tool
    schemas = [t.schema for t in registry.values()]
    stop_ids, stop_strings = stops(tok, spec, name)
    call_token = special_token_id(tok, fmt["call_token"]) if fmt.get("call_token") else None
    history = [dict(m) for m in messages]
    steps = 0
    while True:
        ids = render_chat(tok, spec, history, model_name=name, tools=schemas)
        out = _generate(model, ids, max_new_tokens, stop_ids, sampling)
        while out and out[-1] in stop_ids:
            out.pop()
        marked = call_token is not None and call_token in out
        body = out[out.index(call_token) + 1:] if marked else out
        text = tok.decode(body)  # the reply alone, as mistral-common and transformers decode it
        calls = syntax.parse(text, marked)
        if not calls:
            answer = truncate_at_stop(text, [*stop_strings, *([stop] if isinstance(stop, str) else stop or [])])
            history.append({"role": "assistant", "content": answer})
            return ToolRun(answer, history, steps)
        if steps >= max_steps:
            raise ToolStepLimit(f"{name} was still calling tools after {max_steps} round(s) of calls "
                                f"(max_steps={max_steps}); its last calls: "
                                f"{', '.join(c['name'] for c in calls)}", history)
        steps += 1
        calls = [{**c, "id": c.get("id") or (new_call_id() if syntax.uses_ids else None)} for c in calls]
        history.append({"role": "assistant", "content": "", "tool_calls": [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in calls]})
        for c in calls:
            history.append({"role": "tool", "tool_call_id": c["id"], "name": c["name"],
                            "content": call_tool(registry, c["name"], c["arguments"])})


def chat_with_tools(model: Any, messages: Sequence[Mapping[str, Any]], max_new_tokens: int = 256, *,
                    tools: Sequence[Any], **kw: Any) -> str:
    """The model's final answer after any tool calls (m.chat(messages, tools=[...]))."""
    return run(model, messages, tools, max_new_tokens, **kw).answer
