"""Continuous batching: one background thread decodes every live sequence together.

Requests are queued by `submit`; between decode steps the loop admits waiting sequences (their
prompts prefilled in one padded forward), then runs ONE forward for the whole running batch per
step. A sequence leaves as soon as it finishes (stop token, stop string, max_tokens, or its
client went away), and the batch's KV cache is re-packed (repack.py) whenever membership
changes. Text is decoded incrementally per sequence and handed to its sink as it comes.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ..runtime.generation import left_pad
from ..runtime.sampling import sample
from ..textstream import IncrementalDecoder, StopMatcher
from .repack import RowSource, repack

# events a sink receives: ("text", str), ("done", finish_reason, completion_tokens), ("error", message)
Sink = Callable[[tuple], None]


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_ids: frozenset[int] = frozenset()


@dataclass
class EngineStats:
    decode_steps: int = 0  # forwards of the running batch (one token for every live row)
    rows_decoded: int = 0  # sum over decode steps of the batch size
    prefills: int = 0  # prompt forwards (each may admit several sequences)
    generated_tokens: int = 0
    max_batch_seen: int = 0
    repacks: int = 0

    @property
    def mean_batch(self) -> float:
        return self.rows_decoded / self.decode_steps if self.decode_steps else 0.0


class Sequence_:
    """One choice of one request: its prompt, sampling state, text state and output tokens."""

    def __init__(self, prompt: list[int], params: SamplingParams, sink: Sink, tokenizer: Any,
                 generator: torch.Generator | None) -> None:
        self.prompt = prompt
        self.params = params
        self.sink = sink
        self.generator = generator
        self.tokens: list[int] = []
        self.decoder = IncrementalDecoder(tokenizer, context=prompt) if tokenizer is not None else None
        self.matcher = StopMatcher(list(params.stop))
        self.finish_reason: str | None = None
        self.cancelled = False

    def cancel(self) -> None:
        """Leave the batch at the next step (the client went away)."""
        self.cancelled = True

    def _emit(self, text: str) -> bool:
        """Pass `text` through the stop matcher; True when a stop string ended the sequence."""
        out, stopped = self.matcher.push(text)
        if out:
            self.sink(("text", out))
        return bool(stopped)

    def accept(self, token: int) -> bool:
        """Take the next token; True when the sequence is finished."""
        self.tokens.append(token)
        if token in self.params.stop_ids:
            return self._finish("stop")
        if self.decoder is not None and self._emit(self.decoder.push(token)):
            return self._finish("stop", flush=False)
        if len(self.tokens) >= self.params.max_tokens:
            return self._finish("length")
        return False

    def _finish(self, reason: str, flush: bool = True) -> bool:
        if flush and self.decoder is not None:
            tail = self.decoder.flush()
            stopped = self._emit(tail) if tail else False
            if not stopped:
                rest = self.matcher.flush()
                if rest:
                    self.sink(("text", rest))
        self.finish_reason = reason
        self.sink(("done", reason, len(self.tokens)))
        return True


def _generator(seed: int | None, index: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:  # choice `index` of a seeded request: its own stream, the same on every run
        g.manual_seed((seed * 1_000_003 + index) % (2 ** 63))
    return g


class Engine:
    """The batching loop over `model` (a zoo model, in eval mode). `max_batch` bounds the
    running batch; more sequences wait in a queue and join as others leave."""

    def __init__(self, model: Any, max_batch: int = 16, pad_id: int | None = None) -> None:
        self.model = model
        self.max_batch = max_batch
        self.tokenizer = getattr(model, "tokenizer", None)
        tok = getattr(self.tokenizer, "pad_id", None)
        self.pad_id = pad_id if pad_id is not None else (tok if tok not in (None, -1) else 0)
        self.device = next(model.parameters()).device
        self.stats = EngineStats()
        self._pending: deque[Sequence_] = deque()
        self._active: list[Sequence_] = []
        self._cache: Any = None
        self._cv = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control
    def start(self) -> "Engine":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="zoo-serve-engine", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def submit(self, prompt: Sequence[int], params: SamplingParams, sinks: Sequence[Sink]) -> list[Sequence_]:
        """Queue one sequence per sink (a request's n choices share the prompt)."""
        prompt = list(prompt)
        seqs = [Sequence_(prompt, params, sink, self.tokenizer, _generator(params.seed, i, self.device))
                for i, sink in enumerate(sinks)]
        with self._cv:
            if self._closed:
                raise RuntimeError("the engine is closed")
            self._pending.extend(seqs)
            self._cv.notify_all()
        return seqs

    def generate(self, prompt: Sequence[int], params: SamplingParams) -> tuple[list[int], str, str]:
        """Blocking: (tokens, text, finish_reason) of one sequence (for tests and scripts)."""
        done = threading.Event()
        pieces: list[str] = []
        result: list[Any] = []

        def sink(event: tuple) -> None:
            if event[0] == "text":
                pieces.append(event[1])
            else:
                result.append(event)
                done.set()

        seq = self.submit(prompt, params, [sink])[0]
        done.wait()
        if result[0][0] == "error":
            raise RuntimeError(result[0][1])
        return seq.tokens, "".join(pieces), result[0][1]

    # ------------------------------------------------------------------ loop
    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._closed and not self._pending and not self._active:
                    self._cv.wait()
                if self._closed:
                    break
                room = self.max_batch - len(self._active)
                joiners = [self._pending.popleft() for _ in range(min(room, len(self._pending)))]
            try:
                with torch.no_grad():
                    self._step(joiners)
            except Exception as e:  # noqa: BLE001 - fail these requests, keep serving the next ones
                msg = f"{type(e).__name__}: {e}"
                for s in self._active + joiners:
                    if s.finish_reason is None:
                        s.finish_reason = "error"
                        s.sink(("error", msg))
                self._active, self._cache = [], None
        for s in list(self._pending) + self._active:
            s.sink(("error", "the server is shutting down"))

    def _step(self, joiners: list[Sequence_]) -> None:
        joiners = [s for s in joiners if not s.cancelled]
        changed = any(s.cancelled for s in self._active)
        sources = [RowSource(self._cache, i) for i, s in enumerate(self._active) if not s.cancelled]
        live = [s for s in self._active if not s.cancelled]
        if joiners:
            new_sources, new_live = self._prefill(joiners)
            sources += new_sources
            live += new_live
            changed = True
        if changed:
            self._repack(live, sources)
        if self._active:
            self._decode()

    def _prefill(self, joiners: list[Sequence_]) -> tuple[list[RowSource], list[Sequence_]]:
        """One forward over the joiners' distinct prompts; each joiner samples its first token."""
        prompts: list[list[int]] = []
        where: dict[int, int] = {}
        for s in joiners:
            if id(s.prompt) not in where:
                where[id(s.prompt)] = len(prompts)
                prompts.append(s.prompt)
        tokens, mask = left_pad(prompts, self.pad_id, self.device)
        cache = self.model.new_cache(len(prompts), tokens.shape[1], static=False)
        logits = self.model(tokens, attention_mask=mask, cache=cache, last_only=True)[:, -1]
        self.stats.prefills += 1
        rows = [where[id(s.prompt)] for s in joiners]
        firsts = self._sample(logits[rows], joiners)
        sources, live = [], []
        for s, row, tok in zip(joiners, rows, firsts):
            if not s.accept(tok):
                sources.append(RowSource(cache, row))
                live.append(s)
        return sources, live

    def _repack(self, live: list[Sequence_], sources: list[RowSource]) -> None:
        self._active = live
        if not live:
            self._cache = None
            return
        room = max(s.params.max_tokens - len(s.tokens) for s in live)
        self._cache = repack(self.model, sources, room)
        self.stats.repacks += 1

    def _decode(self) -> None:
        batch = self._active
        if self._cache.length + 1 > self._cache.max_len:  # cannot happen with honest max_tokens; be safe
            self._repack(batch, [RowSource(self._cache, i) for i in range(len(batch))])
        last = torch.tensor([[s.tokens[-1]] for s in batch], dtype=torch.long, device=self.device)
        logits = self.model(last, cache=self._cache)[:, -1]
        self.stats.decode_steps += 1
        self.stats.rows_decoded += len(batch)
        self.stats.max_batch_seen = max(self.stats.max_batch_seen, len(batch))
        finished = [s.accept(t) for s, t in zip(batch, self._sample(logits, batch))]
        if any(finished):
            keep = [i for i, f in enumerate(finished) if not f]
            self._repack([batch[i] for i in keep], [RowSource(self._cache, i) for i in keep])

    def _sample(self, logits: torch.Tensor, seqs: list[Sequence_]) -> list[int]:
        """Each row with its own request's temperature, top_p and generator."""
        out = [0] * len(seqs)
        greedy = [i for i, s in enumerate(seqs) if s.params.temperature <= 0]
        if greedy:
            for i, t in zip(greedy, logits[greedy].argmax(-1).tolist()):
                out[i] = t
        for i, s in enumerate(seqs):
            p = s.params
            if p.temperature > 0:
                top_p = p.top_p if p.top_p < 1 else None
                out[i] = int(sample(logits[i:i + 1], p.temperature, None, top_p, s.generator)[0])
        self.stats.generated_tokens += len(seqs)
        return out
