"""Held-out loss that compares across tokenizers: bits per UTF-8 byte of the text.

Cross-entropy per token is not comparable between two vocabularies (a tokenizer with longer
tokens has fewer, harder ones), so the summed next-token loss is divided by the bytes of text
it covered, converted to bits."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F


@dataclass
class HeldOut:
    bits_per_byte: float
    loss_per_token: float  # nats, next-token head
    tokens: int
    bytes: int


@torch.no_grad()
def held_out_loss(model: Any, texts: Sequence[str], *, seq_len: int = 256, max_tokens: int | None = None,
                  batch_size: int = 8) -> HeldOut:
    """Next-token loss of `model` over `texts` (each file followed by EOS, as tiny-code trained),
    cut in windows of `seq_len` tokens; at most `max_tokens` predicted tokens (the files are
    used in order, the bytes counted are those of the tokens scored)."""
    tok = model._need_tokenizer()
    ids: list[int] = []
    for t in texts:
        ids.extend(tok.encode(t, bos=False, eos=True))
        if max_tokens is not None and len(ids) > max_tokens + 1:
            break
    if max_tokens is not None:
        ids = ids[:max_tokens + 1]
    n_win = max(1, (len(ids) - 1) // seq_len)
    windows = torch.tensor(ids[:n_win * seq_len + 1])
    was = model.training
    model.eval()
    total, count, n_bytes = 0.0, 0, 0
    for start in range(0, n_win, batch_size):
        rows = [windows[i * seq_len:(i + 1) * seq_len + 1] for i in range(start, min(n_win, start + batch_size))]
        batch = torch.stack(rows)
        logits = model(batch[:, :-1]).float()
        total += float(F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten(), reduction="sum"))
        count += batch[:, 1:].numel()
        n_bytes += sum(len(tok.decode(r[1:].tolist()).encode("utf-8")) for r in rows)
    model.train(was)
    return HeldOut(total / max(n_bytes, 1) / math.log(2), total / max(count, 1), count, n_bytes)
