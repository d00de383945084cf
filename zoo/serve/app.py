"""The OpenAI-compatible HTTP API over an Engine: /v1/models, /v1/completions and
/v1/chat/completions, each with `stream: true` as server-sent events."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..compiler.errors import ZooError
from .engine import Engine, SamplingParams
from .protocol import APIError, Sampling, error_body, messages_of, prompts_of, sampling
from .text import chat_stops, render_chat_prompt


class Service:
    """What the endpoints share: the engine, the model's names, and prompt encoding."""

    def __init__(self, engine: Engine, name: str, aliases: tuple[str, ...] = ()) -> None:
        self.engine = engine
        self.model = engine.model
        self.name = name
        self.names = {name, *aliases}
        self.created = int(time.time())
        cfg = getattr(self.model, "cfg", None)
        self.context = getattr(cfg, "max_seq_len", None)
        self.vocab = getattr(cfg, "vocab_size", None)

    def check_model(self, body: dict) -> None:
        m = body.get("model")
        if not isinstance(m, str):
            raise APIError("model is required (a string): see GET /v1/models", param="model")
        if m not in self.names:
            raise APIError(f"The model {m!r} does not exist: this server serves {self.name!r}", status=404,
                           param="model", code="model_not_found")

    def encode(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, list):
            if self.vocab is not None and any(not 0 <= t < self.vocab for t in prompt):
                raise APIError(f"prompt token ids must be in [0, {self.vocab})", param="prompt")
            return prompt
        tok = getattr(self.model, "tokenizer", None)
        if tok is None:
            raise APIError("this model has no tokenizer: send the prompt as token ids", param="prompt")
        spec = self.model.spec.tokenizer
        bos = spec.bos_id if spec is not None else None
        ids = ([bos] if bos is not None else []) + tok.encode(prompt, bos=False)
        if not ids:
            raise APIError("the prompt is empty (and this model has no BOS token to start from)", param="prompt")
        return ids

    def params(self, s: Sampling, prompt_len: int, default_max: int | None, extra_stops: list[int]) -> SamplingParams:
        room = None if self.context is None else self.context - prompt_len
        if room is not None and room < 1:
            raise APIError(f"the prompt is {prompt_len} tokens, the model's context is {self.context}: no room to "
                           "generate", param="messages" if default_max is None else "prompt")
        max_tokens = s.max_tokens or default_max or room or 256
        if room is not None and max_tokens > room:
            if s.max_tokens is not None:
                raise APIError(f"a {prompt_len}-token prompt plus max_tokens={max_tokens} is past the model's context "
                               f"of {self.context}: ask for at most {room}", param="max_tokens")
            max_tokens = room
        stops = frozenset(self.model.stop_ids()) | frozenset(extra_stops)
        return SamplingParams(max_tokens=max_tokens, temperature=s.temperature, top_p=s.top_p, seed=s.seed,
                              stop=s.stop, stop_ids=stops)

    def start(self, prompts: list[list[int]], params: list[SamplingParams], n: int,
              loop: asyncio.AbstractEventLoop, stream: bool) -> tuple[asyncio.Queue, list[Any]]:
        """Submit n choices per prompt; events arrive on the queue as (choice index, event).
        Without streaming, a choice's text is gathered in the engine thread and comes as one
        event before its end, so the event loop wakes once per choice, not once per token."""
        queue: asyncio.Queue = asyncio.Queue()
        seqs: list[Any] = []

        def sink_for(index: int) -> Any:
            def post(event: tuple) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, (index, event))
            if stream:
                return post
            pieces: list[str] = []

            def gather(event: tuple) -> None:
                if event[0] == "text":
                    pieces.append(event[1])
                    return
                if pieces:
                    post(("text", "".join(pieces)))
                post(event)
            return gather

        for pi, (ids, p) in enumerate(zip(prompts, params)):
            seqs += self.engine.submit(ids, p, [sink_for(pi * n + j) for j in range(n)])
        return queue, seqs


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


async def _collect(queue: asyncio.Queue, count: int) -> tuple[list[str], list[str], int]:
    texts, reasons, used = [""] * count, [""] * count, 0
    left = count
    while left:
        i, ev = await queue.get()
        if ev[0] == "text":
            texts[i] += ev[1]
        elif ev[0] == "done":
            reasons[i], used, left = ev[1], used + ev[2], left - 1
        else:
            raise APIError(f"generation failed: {ev[1]}", status=500, kind="server_error")
    return texts, reasons, used


async def _stream(queue: asyncio.Queue, seqs: list[Any], count: int, chunk: Any, prompt_tokens: int,
                  include_usage: bool, head: list[dict]) -> AsyncIterator[str]:
    try:
        for obj in head:
            yield _sse(obj)
        left, used = count, 0
        while left:
            i, ev = await queue.get()
            if ev[0] == "text":
                yield _sse(chunk(i, ev[1], None))
            elif ev[0] == "done":
                left, used = left - 1, used + ev[2]
                yield _sse(chunk(i, None, ev[1]))
            else:
                yield _sse(error_body(f"generation failed: {ev[1]}", "server_error"))
                break
        else:
            if include_usage:
                yield _sse({**chunk(0, None, None), "choices": [], "usage": _usage(prompt_tokens, used)})
        yield "data: [DONE]\n\n"
    finally:  # the client went away (or we are done): finished sequences ignore this
        for s in seqs:
            s.cancel()


def create_app(engine: Engine, name: str, aliases: tuple[str, ...] = ()) -> FastAPI:
    svc = Service(engine, name, aliases)
    app = FastAPI(title="zoo serve", description="OpenAI-compatible API over a zoo model", docs_url=None,
                  redoc_url=None)
    app.state.service = svc

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if e.status_code == 404 else None
        return JSONResponse(error_body(str(e.detail), code=code), status_code=e.status_code)

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception) -> JSONResponse:
        return JSONResponse(error_body(f"internal error: {type(e).__name__}: {e}", "server_error"), status_code=500)

    async def body_of(request: Request) -> dict:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise APIError("the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise APIError("the request body must be a JSON object")
        svc.check_model(body)
        return body

    def model_card() -> dict:
        return {"id": svc.name, "object": "model", "created": svc.created, "owned_by": "zoo"}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict:
        if model_id not in svc.names:
            raise APIError(f"The model {model_id!r} does not exist", status=404, param="model",
                           code="model_not_found")
        return model_card()

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        body = await body_of(request)
        s = sampling(body)
        echo = body.get("echo", False)
        if not isinstance(echo, bool):
            raise APIError(f"echo must be true or false, got {echo!r}", param="echo")
        raw = prompts_of(body)
        prompts = [svc.encode(p) for p in raw]
        params = [svc.params(s, len(ids), 16, []) for ids in prompts]
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        prompt_tokens = sum(len(p) for p in prompts)
        count = len(prompts) * s.n

        def choice(i: int, text: str, reason: str | None) -> dict:
            return {"index": i, "text": text, "logprobs": None, "finish_reason": reason}

        def chunk(i: int, text: str | None, reason: str | None) -> dict:
            return {"id": rid, "object": "text_completion", "created": created, "model": svc.name,
                    "choices": [choice(i, text or "", reason)]}

        queue, seqs = svc.start(prompts, params, s.n, asyncio.get_running_loop(), s.stream)
        if s.stream:
            head = [chunk(i, raw[i // s.n], None) for i in range(count) if echo and isinstance(raw[i // s.n], str)]
            return StreamingResponse(_stream(queue, seqs, count, chunk, prompt_tokens, s.include_usage, head),
                                     media_type="text/event-stream")
        try:
            texts, reasons, used = await _collect(queue, count)
        finally:
            for q in seqs:
                q.cancel()
        if echo:
            texts = [(raw[i // s.n] if isinstance(raw[i // s.n], str) else "") + t for i, t in enumerate(texts)]
        return {"id": rid, "object": "text_completion", "created": created, "model": svc.name,
                "choices": [choice(i, t, r) for i, (t, r) in enumerate(zip(texts, reasons))],
                "usage": _usage(prompt_tokens, used)}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        body = await body_of(request)
        s = sampling(body, ("max_tokens", "max_completion_tokens"))
        messages = messages_of(body)
        try:
            ids = render_chat_prompt(svc.model, messages)
            stop_ids, stop_strings = chat_stops(svc.model)
        except ZooError as e:
            raise APIError(str(e), param="messages") from None
        s.stop = s.stop + tuple(x for x in stop_strings if x not in s.stop)
        p = svc.params(s, len(ids), None, stop_ids)
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(i: int, text: str | None, reason: str | None) -> dict:
            delta = {} if text is None else {"content": text}
            return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": svc.name,
                    "choices": [{"index": i, "delta": delta, "logprobs": None, "finish_reason": reason}]}

        queue, seqs = svc.start([ids], [p], s.n, asyncio.get_running_loop(), s.stream)
        if s.stream:
            head = [{**chunk(i, None, None), "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                                         "logprobs": None, "finish_reason": None}]}
                    for i in range(s.n)]
            return StreamingResponse(_stream(queue, seqs, s.n, chunk, len(ids), s.include_usage, head),
                                     media_type="text/event-stream")
        try:
            texts, reasons, used = await _collect(queue, s.n)
        finally:
            for q in seqs:
                q.cancel()
        return {"id": rid, "object": "chat.completion", "created": created, "model": svc.name,
                "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "logprobs": None,
                             "finish_reason": r} for i, (t, r) in enumerate(zip(texts, reasons))],
                "usage": _usage(len(ids), used)}

    return app
