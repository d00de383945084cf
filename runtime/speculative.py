"""Self-speculative (blockwise parallel) decoding for multi-token models, greedy.

Heads 1..n-1 draft the tokens after head 0's; the next forward feeds head 0's token and the
drafts together, head 0 verifies them, and the longest agreeing prefix is kept plus head 0's
own next token. Every emitted token is head 0's argmax given the true prefix, so the output is
token for token that of plain greedy decoding; the KV cache is rolled back over rejected drafts.
With a batch, each step keeps the drafts every unfinished row accepted (rows share one cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn

from .generation import as_prompt_list, context_of, left_pad, vocab_of
from .sampling import check_length


@dataclass
class SpeculativeStats:
    forwards: int = 0  # decoding forwards after the prefill
    emitted: int = 0  # tokens emitted by those forwards, summed over rows
    rows: int = 1

    @property
    def mean_accepted(self) -> float:
        """Tokens per forward per row (1.0 = no speed-up over plain decoding)."""
        return self.emitted / max(1, self.forwards * self.rows)


@torch.no_grad()
def speculative_generate(model: nn.Module, prompts: torch.Tensor | Sequence[Sequence[int]], max_new_tokens: int = 32,
                         *, stop_tokens: Iterable[int] = (), pad_id: int = 0, n_draft: int | None = None,
                         ) -> tuple[list[list[int]], SpeculativeStats]:
    n_future = getattr(model, "n_future", 1)
    k = n_future - 1 if n_draft is None else min(n_draft, n_future - 1)
    rows = as_prompt_list(prompts, vocab_of(model))
    check_length(max_new_tokens, max((len(r) for r in rows), default=0), context_of(model))
    device = next(model.parameters()).device
    stops = set(int(s) for s in stop_tokens)
    tokens, mask = left_pad(rows, pad_id, device)
    cache = model.new_cache(len(rows), tokens.shape[1] + max_new_tokens + k + 1)
    step_end = getattr(getattr(model, "backend", None), "step_end", lambda: None)
    stats = SpeculativeStats(rows=len(rows))
    out: list[list[int]] = [[] for _ in rows]
    done = [False] * len(rows)

    def emit(tokens_per_row: list[list[int]]) -> None:
        for i, toks in enumerate(tokens_per_row):
            for t in toks:
                if done[i] or len(out[i]) >= max_new_tokens:
                    done[i] = True
                    break
                out[i].append(t)
                done[i] = t in stops or len(out[i]) >= max_new_tokens

    # guess[:, 0] is head 0's next token (certain); guess[:, 1:] are the drafts after it
    guess = model(tokens, attention_mask=mask, cache=cache, all_heads=True, last_only=True)[:, -1].argmax(-1)
    step_end()
    while not all(done):
        cur = guess[:, : 1 + k]
        start = cache.length
        states = model.states(cur, cache=cache)  # (n, B, 1+k, dim), every head's cache written
        pred = model.logits(states[0]).argmax(-1)  # head 0's token after each fed token
        step_end()
        fed, said = cur.tolist(), pred.tolist()
        accepted = k
        for i in range(len(rows)):  # the drafts every unfinished row accepted
            if not done[i]:
                a = 0
                while a < accepted and said[i][a] == fed[i][a + 1]:
                    a += 1
                accepted = a
        stats.forwards += 1
        before = sum(len(o) for o in out)
        emit([row[: 1 + accepted] for row in fed])
        stats.emitted += sum(len(o) for o in out) - before
        cache.rollback(start + 1 + accepted)
        # the drafts' logits only where they are needed: after the last accepted token
        drafts = model.logits(states[1:, :, accepted]).argmax(-1)  # (n-1, B)
        guess = torch.cat([pred[:, accepted, None], drafts.T], 1)
    return out, stats
