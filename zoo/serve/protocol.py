"""OpenAI request bodies checked by hand, so every mistake is a 400 naming its parameter (not
FastAPI's 422 shape), and OpenAI-shaped error bodies."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MAX_N = 64
MAX_STOPS = 4


class APIError(Exception):
    """An error answered as OpenAI does: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, message: str, status: int = 400, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.message, self.status, self.param, self.code, self.kind = message, status, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def error_body(message: str, kind: str = "invalid_request_error", code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


@dataclass
class Sampling:
    max_tokens: int | None
    temperature: float
    top_p: float
    n: int
    seed: int | None
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(body: dict, name: str, default: float, lo: float, hi: float, lo_open: bool = False) -> float:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise APIError(f"{name} must be a number, got {v!r}", param=name)
    if v > hi or v < lo or (lo_open and v == lo):
        raise APIError(f"{name} must be {'>' if lo_open else '>='} {lo:g} and <= {hi:g}, got {v!r}", param=name)
    return float(v)


def _integer(body: dict, name: str, default: int | None, lo: int, hi: int | None = None) -> int | None:
    v = body.get(name)
    if v is None:
        return default
    if not _is_int(v):
        raise APIError(f"{name} must be an integer, got {v!r}", param=name)
    if v < lo or (hi is not None and v > hi):
        raise APIError(f"{name} must be >= {lo}" + (f" and <= {hi}" if hi is not None else "") + f", got {v!r}",
                       param=name)
    return v


def _stops(body: dict) -> tuple[str, ...]:
    v = body.get("stop")
    if v is None:
        return ()
    stops = [v] if isinstance(v, str) else v
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise APIError(f"stop must be a string or a list of strings, got {v!r}", param="stop")
    if len(stops) > MAX_STOPS:
        raise APIError(f"stop takes at most {MAX_STOPS} strings, got {len(stops)}", param="stop")
    return tuple(s for s in stops if s)


UNSUPPORTED = {"logprobs": (None, False), "top_logprobs": (None, 0), "best_of": (None, 1), "suffix": (None, ""),
               "presence_penalty": (None, 0, 0.0), "frequency_penalty": (None, 0, 0.0), "logit_bias": (None, {}),
               "tools": (None, []), "functions": (None, []), "response_format": (None,)}


def sampling(body: dict, max_tokens_keys: tuple[str, ...] = ("max_tokens",)) -> Sampling:
    """The generation parameters of a completions or chat body (OpenAI's names and ranges)."""
    for name, ok in UNSUPPORTED.items():
        v = body.get(name)
        if name == "response_format" and isinstance(v, dict) and v.get("type") == "text":
            continue
        if v not in ok:  # a neutral value (the default) is fine
            raise APIError(f"{name} is not supported by this server", param=name)
    max_tokens = None
    for key in max_tokens_keys:
        got = _integer(body, key, None, 1)
        max_tokens = got if got is not None else max_tokens
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise APIError(f"stream must be true or false, got {stream!r}", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise APIError("stream_options must be an object", param="stream_options")
    seed = body.get("seed")
    if seed is not None and not _is_int(seed):
        raise APIError(f"seed must be an integer, got {seed!r}", param="seed")
    return Sampling(max_tokens=max_tokens, temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
                    top_p=_number(body, "top_p", 1.0, 0.0, 1.0, lo_open=True),
                    n=_integer(body, "n", 1, 1, MAX_N) or 1, seed=seed, stop=_stops(body),
                    stream=bool(stream), include_usage=bool(options.get("include_usage", False)))


def prompts_of(body: dict) -> list[str | list[int]]:
    """A completions `prompt`: a string, a list of strings, a list of token ids, or a list of
    such lists."""
    p = body.get("prompt")
    if isinstance(p, str):
        return [p]
    if isinstance(p, list) and p:
        if all(_is_int(t) for t in p):
            return [list(p)]
        if all(isinstance(x, str) for x in p):
            return list(p)
        if all(isinstance(x, list) and x and all(_is_int(t) for t in x) for x in p):
            return [list(x) for x in p]
    raise APIError("prompt must be a string, a list of strings, a list of token ids or a list of such lists "
                   f"(non-empty), got {str(p)[:80]!r}", param="prompt")


def messages_of(body: dict) -> list[dict[str, str]]:
    """Chat `messages` as [{"role", "content"}] with string contents (text parts joined)."""
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise APIError("messages must be a non-empty list of {role, content} objects", param="messages")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise APIError(f"messages[{i}] must be an object with a role and a content", param="messages")
        content = m.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise APIError(f"messages[{i}].content: only text parts are supported", param="messages")
                parts.append(part["text"])
            content = "".join(parts)
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise APIError(f"messages[{i}].content must be a string or a list of text parts", param="messages")
        out.append({"role": m["role"], "content": content})
    return out
