"""Generating completions for an evaluation: batched, with a progress bar, one JSON line per
completion as it is made, and resumable.

    done = generate_all(model, {"sample_0": prompt0, ...}, n=10, out=Path("runs/crux/generations.jsonl"),
                        temperature=0.2, top_p=0.95, stop=["[/ANSWER]"], batch_size=16)
    done["sample_0"]   # 10 completions, in index order

Each (key, index) pair is one completion. Prompts are grouped into batches of `batch_size`
rows (similar lengths together, so left padding wastes little) and decoded together
(runtime/generation.py's `iter_tokens`: left-padded prompts over one KV cache); each row's text
is decoded as it comes and a row is finished at EOS or at a stop string, and the batch as soon as
every row is (the same text as `generate_text(..., stop=...)`, without decoding past the stops).
Every finished batch is appended to the JSONL file and flushed, so after a kill a rerun with the
same arguments reads what is there, skips the pairs that are done and generates only the rest (a
line cut short by the kill is dropped and redone). With temperature 0 the result does not depend
on how the work was batched; sampled text is reproducible for the same seed and batching.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..runtime.errors import UsageError


def read_done(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Completions already in `path` by (key, index); a torn last line is cut off the file."""
    done: dict[tuple[str, int], dict[str, Any]] = {}
    if not path.exists():
        return done
    good = 0
    with path.open("rb") as f:
        for raw in f:
            try:
                row = json.loads(raw)
                key, idx, _ = row["id"], int(row["index"]), row["completion"]
            except (ValueError, KeyError, TypeError):
                break  # a line the kill cut short: it and anything after is redone
            if not raw.endswith(b"\n"):
                break
            done[(key, idx)] = row
            good += len(raw)
    if good != path.stat().st_size:
        with path.open("r+b") as f:
            f.truncate(good)
    return done


def _context(model: Any) -> int | None:
    return getattr(getattr(getattr(model, "spec", None), "arch", None), "max_seq_len", None)


def generate_all(model: Any, prompts: Mapping[str, str], *, n: int, out: Path, max_new_tokens: int = 256,
                 temperature: float = 0.0, top_p: float | None = None, top_k: int | None = None,
                 stop: Sequence[str] = (), batch_size: int = 8, seed: int = 0,
                 progress: bool | str = True) -> dict[str, list[str]]:
    """`n` completions of every prompt, {key: [completion 0, …]}; see the module doc."""
    from tqdm.auto import tqdm

    if not isinstance(n, int) or n < 1:
        raise UsageError(f"-n (samples per problem) must be a positive integer, got {n!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch size must be a positive integer, got {batch_size!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    done = read_done(out)
    todo = [(k, j) for k in prompts for j in range(n) if (k, j) not in done]
    model._need_tokenizer()
    lengths = {k: len(model._prompt_ids(p)) for k, p in prompts.items()}
    todo.sort(key=lambda kj: lengths[kj[0]])  # similar lengths share a batch: little padding
    ctx = _context(model)
    sampling: dict[str, Any] = {"temperature": temperature}
    if temperature > 0:
        sampling.update(top_p=top_p, top_k=top_k)
    bar = tqdm(total=len(prompts) * n, initial=len(prompts) * n - len(todo), unit="sample",
               desc=progress if isinstance(progress, str) else "generating", disable=not progress)
    with out.open("a", encoding="utf-8") as f:
        for b in range(0, len(todo), batch_size):
            batch = todo[b:b + batch_size]
            longest = max(lengths[k] for k, _ in batch)
            budget = max_new_tokens if ctx is None else min(max_new_tokens, ctx - longest)
            start = time.monotonic()
            if budget < 1:  # the prompt fills the context: an empty completion, as the reference harness does
                texts = [""] * len(batch)
            else:
                texts = _generate_batch(model, [prompts[k] for k, _ in batch], budget, list(stop), seed + b, sampling)
            took = (time.monotonic() - start) / len(batch)
            for (k, j), text in zip(batch, texts):
                row = {"id": k, "index": j, "completion": text, "seconds": round(took, 4)}
                if budget < max_new_tokens:
                    row["max_new_tokens"] = max(budget, 0)
                f.write(json.dumps(row) + "\n")
                done[(k, j)] = row
            f.flush()
            os.fsync(f.fileno())
            bar.update(len(batch))
    bar.close()
    return {k: [done[(k, j)]["completion"] for j in range(n)] for k in prompts}


def _generate_batch(model: Any, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str], seed: int,
                    sampling: dict[str, Any]) -> list[str]:
    """Completions of a batch of prompts, each ending at EOS or its first stop string."""
    from ..runtime.generation import iter_tokens
    from ..textstream import IncrementalDecoder, StopMatcher

    tok = model._need_tokenizer()
    ids = [model._prompt_ids(p) for p in prompts]
    stop_ids = set(model.stop_ids())
    pad = tok.pad_id if getattr(tok, "pad_id", None) not in (None, -1) else 0
    decoders = [IncrementalDecoder(tok, context=p) for p in ids]
    matchers = [StopMatcher(list(stop) or None) for _ in ids]
    texts: list[list[str]] = [[] for _ in ids]
    done = [False] * len(ids)

    def finish(i: int) -> None:
        piece, hit = matchers[i].push(decoders[i].flush())
        texts[i].append(piece + ("" if hit else matchers[i].flush()))
        done[i] = True

    steps = iter_tokens(model, ids, max_new_tokens, seed=seed, pad_id=pad, **sampling)
    try:
        for nxt in steps:
            for i, t in enumerate(nxt.tolist()):
                if done[i]:
                    continue
                if t in stop_ids:
                    finish(i)
                    continue
                piece, hit = matchers[i].push(decoders[i].push(t))
                texts[i].append(piece)
                done[i] = hit
            if all(done):
                break
    finally:
        steps.close()
    for i in range(len(ids)):
        if not done[i]:
            finish(i)
    return ["".join(t) for t in texts]


def summary_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table of summary rows (same keys in each)."""
    if not rows:
        return ""
    keys = list(rows[0])
    cells = [[_fmt(r.get(k)) for k in keys] for r in rows]
    w = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w[i]) for i, k in enumerate(keys)),
             "  ".join("-" * w[i] for i in range(len(keys)))]
    lines += ["  ".join(c[i].ljust(w[i]) for i in range(len(keys))) for c in cells]
    return "\n".join(line.rstrip() for line in lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}"
    return "" if v is None else str(v)
