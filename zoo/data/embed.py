"""File embeddings for a corpus (`zoo data embed`): any zoo model's final-norm hidden states (or
a transformers encoder's last hidden states, zoo.data.hf_encoder), pooled over each file's first
`max_tokens` tokens, written as a memory-mapped float32 array.

Output folder:

- ``embeddings.f32``: N x dim float32, row i for file i (``numpy.memmap``, C order);
- ``index.json``: the files (paths relative to the corpus), dim, model, pooling, max_tokens,
  and ``done``, the rows written so far. It is rewritten atomically after every batch, so an
  interrupted run resumes from ``done`` (same corpus and settings) instead of starting over.

Files are right-padded in a batch: under causal attention a real token never sees the padding
after it, so its hidden state is what it would be alone; pooling only counts real tokens.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..runtime.errors import UsageError
from ._io import write_text_atomic

POOLING = ("mean", "last")
ARRAY, INDEX = "embeddings.f32", "index.json"


@dataclass
class Embeddings:
    files: list[str]  # relative to the corpus root
    vectors: np.ndarray  # (N, dim) float32, memory-mapped
    meta: dict[str, Any]


def load_embeddings(folder: str | os.PathLike[str]) -> Embeddings:
    """An embeddings folder written by `embed_corpus` (all rows done)."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / INDEX).read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"{folder}: not an embeddings folder ({INDEX}: {e})") from None
    n, dim = len(meta["files"]), int(meta["dim"])
    if meta.get("done", 0) < n:
        raise UsageError(f"{folder}: only {meta.get('done', 0)} of {n} files embedded; run `zoo data embed` "
                         "again with the same arguments to finish")
    vectors = np.memmap(folder / ARRAY, dtype=np.float32, mode="r", shape=(n, dim))
    return Embeddings(list(meta["files"]), vectors, meta)


def _pool(hidden: torch.Tensor, lengths: torch.Tensor, pooling: str) -> torch.Tensor:
    if pooling == "last":
        return hidden[torch.arange(hidden.shape[0]), lengths - 1]
    mask = (torch.arange(hidden.shape[1])[None, :] < lengths[:, None]).to(hidden.dtype)
    return (hidden * mask[..., None]).sum(1) / lengths[:, None].to(hidden.dtype)


class ZooEmbedder:
    """The embedder interface over a zoo model: its tokenizer (no BOS), its final-norm hidden
    states (causal: right padding never reaches a real token)."""

    def __init__(self, model: Any, name: str | None = None):
        self.model = model
        self.tokenizer = model._need_tokenizer()
        self.name = name or model.spec.name
        self.dim = int(model.spec.arch.dim)
        self.context = getattr(getattr(model, "cfg", None), "max_seq_len", None)
        self.pad_id = 0
        self.device = next(model.parameters()).device

    def token_ids(self, text: str, max_tokens: int) -> list[int]:
        return self.tokenizer.encode(text, bos=False)[:max_tokens] or [max(self.tokenizer.eos_id, 0)]

    def hidden(self, batch: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model.hidden_states(batch.to(self.device))


def embed_corpus(model: Any, root: str | os.PathLike[str], files: Sequence[str | os.PathLike[str]],
                 out: str | os.PathLike[str], *, batch_size: int = 8, max_tokens: int = 512,
                 pooling: str = "mean", model_name: str | None = None, progress: bool | None = None,
                 log: Any = print) -> Embeddings:
    """Embed `files` (under `root`) with `model` (a zoo model, or an embedder such as
    zoo.data.hf_encoder.TransformersEncoder) into the folder `out` (module docstring); resumes a
    previous run of the same settings. Returns the finished embeddings."""
    from tqdm.auto import tqdm

    if pooling not in POOLING:
        raise UsageError(f"pooling must be one of {', '.join(POOLING)}, got {pooling!r}")
    if batch_size < 1 or max_tokens < 1:
        raise UsageError(f"batch_size and max_tokens must be >= 1, got {batch_size} and {max_tokens}")
    embedder = model if hasattr(model, "token_ids") else ZooEmbedder(model, model_name)
    limit = embedder.context
    if limit is not None and max_tokens > limit:
        raise UsageError(f"max_tokens {max_tokens} is past the model's context of {limit} tokens")
    root, out = Path(root), Path(out)
    try:
        rel = [Path(f).resolve().relative_to(root.resolve()).as_posix() for f in files]
    except ValueError as e:
        raise UsageError(f"a file outside the corpus folder {root}: {e}") from None
    dim = embedder.dim
    meta = {"files": rel, "dim": dim, "model": model_name or embedder.name, "pooling": pooling,
            "max_tokens": max_tokens, "dtype": "float32", "done": 0}
    out.mkdir(parents=True, exist_ok=True)
    start = 0
    if (out / INDEX).is_file():
        old = json.loads((out / INDEX).read_text())
        if {k: v for k, v in old.items() if k != "done"} == {k: v for k, v in meta.items() if k != "done"}:
            start = int(old.get("done", 0))
            if start:
                log(f"resuming: {start} of {len(rel)} files already embedded")
        else:
            log(f"{out}: an earlier run with other files or settings; starting over")
    mode = "r+" if start and (out / ARRAY).is_file() else "w+"
    vectors = np.memmap(out / ARRAY, dtype=np.float32, mode=mode, shape=(max(len(rel), 1), dim))
    net = getattr(embedder, "model", None) or getattr(embedder, "net", None)
    was = bool(getattr(net, "training", False))
    if net is not None:
        net.eval()
    n_tokens, t0 = 0, time.perf_counter()
    bar = tqdm(total=len(rel), initial=start, desc="embedding", unit="file", disable=None if progress is None else not progress)
    with bar, torch.no_grad():
        for b in range(start, len(rel), batch_size):
            texts = [(root / r).read_text(encoding="utf-8", errors="replace") for r in rel[b:b + batch_size]]
            ids = [embedder.token_ids(t, max_tokens) for t in texts]
            lengths = torch.tensor([len(i) for i in ids])
            batch = torch.full((len(ids), int(lengths.max())), embedder.pad_id, dtype=torch.long)
            for i, row in enumerate(ids):
                batch[i, :len(row)] = torch.tensor(row)
            hidden = embedder.hidden(batch, lengths).float().cpu()
            vectors[b:b + len(ids)] = _pool(hidden, lengths, pooling).numpy()
            vectors.flush()
            n_tokens += int(lengths.sum())
            meta["done"] = b + len(ids)
            write_text_atomic(out / INDEX, json.dumps(meta) + "\n")
            bar.update(len(ids))
    if net is not None:
        net.train(was)
    seconds = time.perf_counter() - t0
    if meta["done"] > start:
        log(f"embedded {meta['done'] - start} files, {n_tokens:,} tokens in {seconds:.1f} s: "
            f"{(meta['done'] - start) / seconds:.1f} files/s, {n_tokens / seconds:,.0f} tokens/s")
    meta["done"] = len(rel)
    write_text_atomic(out / INDEX, json.dumps(meta) + "\n")
    del vectors
    return load_embeddings(out)
