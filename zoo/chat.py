"""Chat templates as data: a spec's `tokenizer.chat: {template: NAME, params: {...}}` names a file
of `specs/formats/chat/` (strings with placeholders), rendered here straight to token ids.

A template file holds the strings of each part (`user`, `assistant`, `turn` for any role,
`system_turn`, `merge` for a system prompt folded into a user turn, `prefix`, `generation`) with
placeholders: `{content}`, `{role}`, `{system}`, `{bos}` / `{eos}` (the spec's ids),
`{special:NAME}` (the tokenizer's id of that token) and the template's `params`. The control
flow that differs between families is a few fields, not code per family:

- `system`: `merge-first` / `merge-last` (the system prompt opens the first / last user turn,
  as Llama 2 / mistral-common v3) or `turn` (its own block; `always_system` emits it empty);
- `encode`: `joined` encodes the text between two special tokens as one piece (what a
  transformers tokenizer does with a rendered template), `per-message` each message alone
  (mistral-common);
- `continue_after_special`: text right after a `{special:...}` token is encoded as a
  continuation, without SentencePiece's dummy-prefix space (as transformers tokenizes it);
- `trim` per role (`strip`, `rstrip-spaces`), `alternate` (user/assistant strictly alternate);
- `style: tekken` hands the conversation to Pixtral's layout (runtime/vision/chat.py).

`stop` lists what ends a reply: `{eos}` / `{special:...}` become ids, other strings stop strings.
Bad conversations are UsageErrors naming the message at fault.

Tool use (zoo/tools/): a template's `tools:` section says how a tool list, an assistant's tool
calls (`{"role": "assistant", "tool_calls": [...]}`) and a tool's result (`{"role": "tool", ...}`)
are laid out: `syntax` names the text encoding of zoo/tools/formats.py, `available` /
`merge` where the tool list goes (`place`: before the last user turn, or merged into the first),
`call` and `result` the parts around calls and results, `environment` a note for the system
block (`{environment}`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .compiler.errors import UsageError
from .runtime.generation import iter_tokens
from .textstream import check_stops, text_pieces

ROLES = ("system", "user", "assistant")
_PLACEHOLDER = re.compile(r"\{(special:[^{}]+|bos|eos|content|role|system|tools|environment)\}")
_VALUES = ("content", "role", "system", "tools", "environment")
_FIELDS = {"description", "style", "encode", "continue_after_special", "prefix", "system", "always_system", "merge", "trim", "alternate",
           "user", "assistant", "turn", "system_turn", "generation", "stop", "params", "jinja", "tools"}
_TOOL_FIELDS = {"syntax", "place", "available", "merge", "call", "result", "environment", "call_token"}


def templates_root() -> Path:
    from . import specs

    return Path(specs.__file__).parent / "formats" / "chat"


def template_names() -> list[str]:
    return sorted(p.stem for p in templates_root().glob("*.yaml"))


@dataclass(frozen=True)
class Template:
    name: str
    data: dict[str, Any] = field(hash=False)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def part(self, role: str) -> str:
        key = {"system": "system_turn"}.get(role, role)
        out = self.data.get(key, self.data.get("turn"))
        if out is None:
            raise UsageError(f"chat template {self.name!r} has no {key!r} (nor 'turn') string")
        return out


@functools.lru_cache(maxsize=None)
def load_template(name: str) -> Template:
    """The template file `specs/formats/chat/NAME.yaml`; UsageError naming the choices."""
    path = templates_root() / f"{name}.yaml"
    if "/" in name or not path.is_file():
        raise UsageError(f"unknown chat template {name!r} (tokenizer.chat.template); "
                         f"one of: {', '.join(template_names())}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = set(data) - _FIELDS
    if unknown:
        raise UsageError(f"{path}: unknown field(s) {sorted(unknown)}; expected some of {sorted(_FIELDS)}")
    return Template(name, data)


def chat_spec(tokenizer_spec: Any, model_name: str = "this model") -> Any:
    chat = getattr(tokenizer_spec, "chat", None) if tokenizer_spec is not None else None
    if chat is None:
        raise UsageError(f"{model_name} has no chat template: add `tokenizer: {{chat: {{template: NAME}}}}` to its "
                         f"spec (NAME one of {', '.join(template_names())}), or use generate for plain completion")
    return chat


def template_params(template: Template, chat: Any) -> dict[str, str]:
    params = dict(template.get("params") or {})
    unknown = set(chat.params) - set(params)
    if unknown:
        raise UsageError(f"tokenizer.chat.params: {sorted(unknown)} not parameters of chat template "
                         f"{template.name!r} ({', '.join(sorted(params)) or 'it has none'})")
    params.update(chat.params)
    return params


# ---------------------------------------------------------------------------------- messages
def check_messages(messages: Any, alternate: bool = True) -> list[tuple[str, str]]:
    """(role, content) pairs of a conversation; UsageError for anything else."""
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)) or not messages:
        raise UsageError(f"a conversation is a non-empty list of {{'role': ..., 'content': ...}} dicts, "
                         f"got {type(messages).__name__}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise UsageError(f"message {i}: expected a dict with 'role' and 'content', got {type(m).__name__}")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise UsageError(f"message {i}: role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise UsageError(f"message {i} ({role}): content must be a string, got {type(content).__name__}")
        if role == "system" and i != 0:
            raise UsageError(f"message {i}: a system message may only come first")
        out.append((role, content))
    if alternate:
        turns = out[1:] if out[0][0] == "system" else out
        for j, (role, _) in enumerate(turns):
            want = "user" if j % 2 == 0 else "assistant"
            if role != want:
                raise UsageError(f"message {j + len(out) - len(turns)}: expected a {want} message (after an optional "
                                 f"system message, roles alternate user/assistant/user/...), got {role}")
    return out


def _trim(text: str, how: str | None) -> str:
    if how == "strip":
        return text.strip()
    if how == "rstrip-spaces":
        return text.rstrip(" ")
    return text


# ---------------------------------------------------------------------------------- rendering
def special_token_id(tokenizer: Any, name: str) -> int:
    """The id of a special token by its text, whatever the tokenizer kind."""
    if hasattr(tokenizer, "special_id"):  # Tekken
        return int(tokenizer.special_id(name))
    if hasattr(tokenizer, "has_piece"):  # SentencePiece
        if tokenizer.has_piece(name):
            return int(tokenizer.piece_to_id(name))
    else:
        found = tokenizer.tokenizer.token_to_id(name)
        if found is not None:
            return int(found)
    raise UsageError(f"the tokenizer has no {name!r} token, which the chat template needs")


class _Builder:
    """Ids from template strings: text runs encoded in pieces (`joined` or per message)."""

    def __init__(self, tokenizer: Any, spec: Any, params: Mapping[str, str]) -> None:
        self.tok, self.spec, self.params = tokenizer, spec, params
        self.ids: list[int] = []
        self.text: list[str] = []
        self.continue_after_special, self.after_special = False, False

    def flush(self) -> None:
        text = "".join(self.text)
        if text and self.after_special and hasattr(self.tok, "encode_without_dummy_prefix"):
            self.ids += self.tok.encode_without_dummy_prefix(text)  # what transformers does after an added token
        elif text:
            self.ids += self.tok.encode(text, bos=False)
        self.text, self.after_special = [], False

    def special(self, name: str) -> None:
        self.flush()
        if name in ("bos", "eos"):
            value = getattr(self.spec, f"{name}_id", None)
            if value is not None:
                self.ids.append(int(value))
        else:
            self.ids.append(special_token_id(self.tok, name.removeprefix("special:")))
            self.after_special = self.continue_after_special

    def emit(self, pattern: str, **values: str) -> None:
        for name, value in self.params.items():
            pattern = pattern.replace("{" + name + "}", value)
        pos = 0
        for m in _PLACEHOLDER.finditer(pattern):
            self.text.append(pattern[pos:m.start()])
            key = m.group(1)
            if key in _VALUES:
                self.text.append(values.get(key, ""))
            else:
                self.special(key)
            pos = m.end()
        self.text.append(pattern[pos:])


def render_chat(tokenizer: Any, tokenizer_spec: Any, messages: Sequence[Mapping[str, Any]],
                add_generation_prompt: bool = True, model_name: str = "this model",
                tools: Sequence[Any] | None = None) -> list[int]:
    """The prompt ids of a conversation in the spec's chat format. `tools` (JSON schemas,
    functions or zoo.tools.Tool) and tool messages (an assistant's `tool_calls`, `role: tool`
    results) are laid out by the template's `tools:` section (zoo/tools/formats.py)."""
    chat = chat_spec(tokenizer_spec, model_name)
    t = load_template(chat.template)
    params = template_params(t, chat)
    tooling = bool(tools) or _has_tool_messages(messages)
    if t.get("style") == "tekken":
        from .runtime.tokenizers.errors import TokenizerError
        from .runtime.vision.chat import encode_chat

        if tooling:
            raise UsageError(f"chat template {t.name!r}: tool use is not laid out for Tekken vocabularies yet")
        check_messages(messages, alternate=False)
        try:
            return encode_chat(tokenizer, messages)[0]
        except TokenizerError as e:
            raise UsageError(str(e)) from None
    if tooling:
        fmt, syntax = tool_format(t)
        msgs = check_tool_messages(messages, bool(t.get("alternate", True)))
        tools_text = syntax.tools(tools) if tools else None
    else:
        fmt, syntax, tools_text = {}, None, None
        msgs = [Turn(role, content) for role, content in check_messages(messages, bool(t.get("alternate", True)))]
    trim = t.get("trim") or {}
    mode = t.get("system", "turn")
    system = msgs[0].content if msgs[0].role == "system" else None
    turns = msgs[1:] if system is not None else msgs
    b = _Builder(tokenizer, tokenizer_spec, params)
    b.continue_after_special = bool(t.get("continue_after_special"))
    b.emit(t.get("prefix", ""))
    environment = fmt.get("environment", "") if tools_text is not None else ""
    if mode == "turn":
        if system is not None or t.get("always_system"):
            b.emit(t.part("system"), role="system", content=_trim(system or "", trim.get("system")),
                   environment=environment)
        elif params.get("default_system"):
            b.emit(t.part("system"), role="system", content=params["default_system"], environment=environment)
    users = [i for i, m in enumerate(turns) if m.role == "user"]
    host = {"merge-first": users[:1], "merge-last": users[-1:]}.get(mode, [])
    tools_host = -1
    if tools_text is not None:
        if not users:
            raise UsageError("tools are given but the conversation has no user message to attach them to")
        tools_host = users[-1] if fmt.get("place") == "before-last-user" else users[0]
    for i, m in enumerate(turns):
        if m.calls is not None:
            b.emit(fmt["call"], content=syntax.calls(m.calls))
        elif m.role == "tool":
            b.emit(fmt["result"], content=syntax.result(m.content, m.call_id, m.name))
        else:
            content = m.content
            if system and i in host:
                content = t.get("merge", "{system}\n\n{content}").replace("{system}", system).replace("{content}", content)
            content = _trim(content, trim.get(m.role))
            if i == tools_host and fmt.get("place") == "before-last-user":
                b.emit(fmt["available"], tools=tools_text)
            elif i == tools_host:
                content = _fill(fmt["merge"], tools=tools_text, content=content)
            b.emit(t.part(m.role), role=m.role, content=content)
        if t.get("encode") == "per-message":
            b.flush()
    if add_generation_prompt:
        b.emit(t.get("generation", ""))
    b.flush()
    return b.ids


# ---------------------------------------------------------------------------------- tool messages
@dataclass(frozen=True)
class Turn:
    """One checked message: an assistant's tool calls are `calls` ([{id, name, arguments}])."""

    role: str
    content: str
    calls: list[dict[str, Any]] | None = None
    call_id: str | None = None
    name: str | None = None


def _fill(pattern: str, **values: str) -> str:
    """`{name}` placeholders replaced in one pass (a value's own braces are left alone)."""
    return re.sub(r"\{(" + "|".join(values) + r")\}", lambda m: values[m.group(1)], pattern)


def _has_tool_messages(messages: Any) -> bool:
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
        return False
    return any(isinstance(m, Mapping) and (m.get("role") == "tool" or m.get("tool_calls")) for m in messages)


def tool_format(template: Template) -> tuple[dict[str, Any], Any]:
    """The template's `tools:` section and the text syntax it names (zoo/tools/formats.py)."""
    from .tools.formats import get_syntax

    fmt = template.get("tools")
    if not fmt:
        raise UsageError(f"chat template {template.name!r} has no tool-call format (no `tools:` section): "
                         f"tools and tool messages are laid out by templates that have one")
    unknown = set(fmt) - _TOOL_FIELDS
    if unknown:
        raise UsageError(f"chat template {template.name!r}: unknown tools field(s) {sorted(unknown)}; "
                         f"expected some of {sorted(_TOOL_FIELDS)}")
    return fmt, get_syntax(fmt.get("syntax"))


def _tool_calls(i: int, calls: Any) -> list[dict[str, Any]]:
    import json

    if not isinstance(calls, Sequence) or isinstance(calls, (str, bytes)) or not calls:
        raise UsageError(f"message {i}: tool_calls must be a non-empty list of "
                         f"{{'function': {{'name': ..., 'arguments': {{...}}}}}} dicts")
    out = []
    for k, call in enumerate(calls):
        fn = call.get("function", call) if isinstance(call, Mapping) else None
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
            raise UsageError(f"message {i}, tool call {k}: expected {{'function': {{'name': str, 'arguments': ...}}}}")
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError as e:
                raise UsageError(f"message {i}, tool call {k}: arguments are not JSON ({e})") from None
        if not isinstance(args, Mapping):
            raise UsageError(f"message {i}, tool call {k}: arguments must be a dict (or its JSON), "
                             f"got {type(args).__name__}")
        call_id = call.get("id")
        if call_id is not None and not isinstance(call_id, str):
            raise UsageError(f"message {i}, tool call {k}: id must be a string, got {type(call_id).__name__}")
        out.append({"id": call_id, "name": fn["name"], "arguments": dict(args)})
    return out


def check_tool_messages(messages: Any, alternate: bool = True) -> list[Turn]:
    """The Turns of a conversation that may hold tool calls and results; UsageError otherwise.
    A `tool` message follows an assistant's `tool_calls` (or another result); its
    `tool_call_id` defaults to the id of the call at its position. With `alternate`, user and
    assistant turns alternate once tool calls and results are left out."""
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)) or not messages:
        check_messages(messages)
    out: list[Turn] = []
    pending: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise UsageError(f"message {i}: expected a dict with 'role' and 'content', got {type(m).__name__}")
        role, content = m.get("role"), m.get("content")
        if role not in (*ROLES, "tool"):
            raise UsageError(f"message {i}: role must be one of {', '.join(ROLES)}, tool; got {role!r}")
        if role == "assistant" and m.get("tool_calls"):
            if content not in (None, ""):
                raise UsageError(f"message {i}: an assistant message with tool_calls has no content")
            calls = _tool_calls(i, m["tool_calls"])
            out.append(Turn(role, "", calls=calls))
            pending = list(calls)
            continue
        if not isinstance(content, str):
            raise UsageError(f"message {i} ({role}): content must be a string, got {type(content).__name__}")
        if role == "system" and i != 0:
            raise UsageError(f"message {i}: a system message may only come first")
        if role == "tool":
            if not out or (out[-1].calls is None and out[-1].role != "tool"):
                raise UsageError(f"message {i}: a tool result must follow an assistant message with tool_calls")
            call = pending.pop(0) if pending else {}
            call_id = m.get("tool_call_id", call.get("id"))
            if call_id is not None and not isinstance(call_id, str):
                raise UsageError(f"message {i}: tool_call_id must be a string, got {type(call_id).__name__}")
            out.append(Turn(role, content, call_id=call_id, name=m.get("name", call.get("name"))))
            continue
        out.append(Turn(role, content))
    if alternate:
        plain = [(j, m.role) for j, m in enumerate(out) if m.role != "tool" and m.calls is None]
        turns = plain[1:] if plain and plain[0][1] == "system" else plain
        for k, (j, role) in enumerate(turns):
            want = "user" if k % 2 == 0 else "assistant"
            if role != want:
                raise UsageError(f"message {j}: expected a {want} message (after an optional system message, roles "
                                 f"alternate user/assistant/user/..., tool calls and results between them), got {role}")
    return out


def stops(tokenizer: Any, tokenizer_spec: Any, model_name: str = "this model") -> tuple[list[int], list[str]]:
    """(stop ids, stop strings) that end an assistant reply in the spec's chat format."""
    t = load_template(chat_spec(tokenizer_spec, model_name).template)
    ids: list[int] = []
    strings: list[str] = []
    for s in t.get("stop") or []:
        m = _PLACEHOLDER.fullmatch(s)
        if m and m.group(1) in ("bos", "eos"):
            value = getattr(tokenizer_spec, f"{m.group(1)}_id", None)
            found = [int(value)] if value is not None else []
        elif m and m.group(1).startswith("special:"):
            try:
                found = [special_token_id(tokenizer, m.group(1).removeprefix("special:"))]
            except UsageError:
                found, strings = [], strings + [m.group(1).removeprefix("special:")]
        else:
            found, strings = [], strings + [s]
        ids += [i for i in found if i not in ids]
    return ids, strings


def jinja_template(tokenizer_spec: Any) -> str | None:
    """The chat template as transformers' Jinja (for tokenizer_config.json), its parameters set;
    None where the spec has no chat format or its template ships no Jinja."""
    chat = getattr(tokenizer_spec, "chat", None) if tokenizer_spec is not None else None
    if chat is None:
        return None
    t = load_template(chat.template)
    if not t.get("jinja"):
        return None
    head = "".join(f"{{%- if {k} is not defined %}}{{%- set {k} = {v!r} %}}{{%- endif %}}"
                   for k, v in template_params(t, chat).items())
    return head + t.get("jinja")


# ---------------------------------------------------------------------------------- replies
def _is_conversation(messages: Any) -> bool:
    return isinstance(messages, Sequence) and not isinstance(messages, (str, bytes)) and (
        not messages or isinstance(messages[0], Mapping))


def reply_stream(model: Any, messages: Sequence[Mapping[str, Any]], max_new_tokens: int = 256, *,
                 temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
                 seed: int | None = None, stop: str | Sequence[str] | None = None) -> Iterator[str]:
    """Text pieces of the assistant's reply to one conversation, as tokens are decoded; ends at
    the template's stop tokens or strings (or `stop`), none of which is yielded. Everything is
    checked before the first piece (the template, the messages, the sampling arguments)."""
    tok = model._need_tokenizer()
    spec = model.spec.tokenizer
    ids = render_chat(tok, spec, messages, model_name=model.spec.name)
    stop_ids, stop_strings = stops(tok, spec, model.spec.name)
    pad = tok.pad_id if getattr(tok, "pad_id", None) not in (None, -1) else 0
    steps = iter_tokens(model, [ids], max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                        pad_id=pad)
    return text_pieces(tok, (int(t[0]) for t in steps), context=ids, stop_ids=stop_ids,
                       stop=[*stop_strings, *check_stops(stop)])


def reply(model: Any, messages: Any, max_new_tokens: int = 256, **kw: Any) -> str | list[str]:
    """The assistant's reply to a conversation, or a list of replies for a list of them."""
    if _is_conversation(messages):
        return "".join(reply_stream(model, messages, max_new_tokens, **kw))
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)) or not messages:
        check_messages(messages)  # the UsageError saying what a conversation is
    return ["".join(reply_stream(model, conv, max_new_tokens, **kw)) for conv in messages]
