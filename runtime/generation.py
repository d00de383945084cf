"""Batched autoregressive decoding over a preallocated KV cache.

Prompts of different lengths are left-padded so every row's next token sits in the last column;
padding slots are masked out of attention and RoPE positions count real tokens only.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import torch
from torch import nn

from .errors import UsageError
from .sampling import check_length, check_sampling, sample


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, attention_mask), both (B, max_len), prompts right-aligned."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise UsageError("every prompt needs at least one token")
    width = max(len(p) for p in prompts)
    tokens = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        tokens[i, width - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
        mask[i, width - len(p):] = 1
    return tokens.to(device), mask.to(device)


def vocab_of(model: nn.Module) -> int | None:
    return getattr(getattr(model, "cfg", None), "vocab_size", None)


def context_of(model: nn.Module) -> int | None:
    """The positions the model was built for (its spec's max_seq_len), when it says."""
    return getattr(getattr(model, "cfg", None), "max_seq_len", None)


def _is_id(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def as_prompt_list(prompts: torch.Tensor | Sequence[Sequence[int]] | Sequence[int],
                   vocab_size: int | None = None) -> list[list[int]]:
    """Prompts as lists of token ids: a 1-D or 2-D integer tensor, a list of ids, or a list of
    such lists; UsageError for anything else, or for an id outside [0, vocab_size)."""
    if isinstance(prompts, torch.Tensor):
        if prompts.dim() not in (1, 2) or prompts.is_floating_point() or prompts.is_complex() or \
                prompts.dtype == torch.bool:
            raise UsageError(f"prompt tokens: expected a 1-D or 2-D integer tensor, got {prompts.dtype} "
                             f"{list(prompts.shape)}")
        rows = (prompts[None] if prompts.dim() == 1 else prompts).tolist()
    elif isinstance(prompts, (list, tuple)):
        rows = [list(prompts)] if prompts and _is_id(prompts[0]) else list(prompts)
        if not all(isinstance(r, (list, tuple)) and all(_is_id(t) for t in r) for r in rows):
            raise UsageError("prompt tokens: expected a list of token ids (ints) or a list of such lists")
        rows = [list(r) for r in rows]
    else:
        raise UsageError(f"prompt tokens: expected token ids, got {type(prompts).__name__} (text goes to "
                         "generate_text)")
    if vocab_size is not None:
        bad = [t for r in rows for t in r if not 0 <= t < vocab_size]
        if bad:
            raise UsageError(f"prompt tokens: id {bad[0]} is outside the vocabulary (0 .. {vocab_size - 1})")
    return rows


def iter_tokens(model: nn.Module, prompts: torch.Tensor | Sequence[Sequence[int]], max_new_tokens: int = 32, *,
                temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None, pad_id: int = 0,
                seed: int | None = None, generator: torch.Generator | None = None,
                prefill_kwargs: dict | None = None) -> Iterator[torch.Tensor]:
    """The decoding loop, one step at a time: yields each step's (B,) next tokens, at most
    `max_new_tokens` times. The prompts are prefilled into a KV cache on the first step and each
    later step feeds one token per row; the caller ends the loop early by leaving it (stop
    tokens are the caller's). Arguments are checked here, before anything runs: UsageError for
    sampling arguments out of range or a request past the model's context."""
    check_sampling(temperature, top_k, top_p)
    if seed is not None and not _is_id(seed):
        raise UsageError(f"seed must be an integer, got {seed!r}")
    rows = as_prompt_list(prompts, vocab_of(model))
    check_length(max_new_tokens, max((len(r) for r in rows), default=0), context_of(model))
    return _steps(model, rows, max_new_tokens, temperature, top_k, top_p, pad_id, seed, generator,
                  prefill_kwargs or {})


@torch.no_grad()
def _steps(model: nn.Module, rows: list[list[int]], max_new_tokens: int, temperature: float, top_k: int | None,
           top_p: float | None, pad_id: int, seed: int | None, generator: torch.Generator | None,
           prefill_kwargs: dict) -> Iterator[torch.Tensor]:
    device = next(model.parameters()).device
    if generator is None and seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    tokens, mask = left_pad(rows, pad_id, device)
    need = tokens.shape[1] + max_new_tokens
    if getattr(getattr(model, "backend", None), "prefers_static_cache", False):
        need = -(-need // 128) * 128  # round up: calls of similar lengths share one compiled decode graph
    cache = model.new_cache(len(rows), need)
    step_end = getattr(getattr(model, "backend", None), "step_end", lambda: None)
    logits = model(tokens, attention_mask=mask, cache=cache, last_only=True, **prefill_kwargs)[:, -1]
    for step in range(max_new_tokens):
        nxt = sample(logits, temperature, top_k, top_p, generator)
        step_end()
        yield nxt
        if step == max_new_tokens - 1:
            return
        logits = model(nxt[:, None], cache=cache)[:, -1]  # no_grad holds on each resume (torch wraps generators)


def generate(model: nn.Module, prompts: torch.Tensor | Sequence[Sequence[int]], max_new_tokens: int = 32, *,
             temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
             stop_tokens: Iterable[int] = (), pad_id: int = 0, seed: int | None = None,
             generator: torch.Generator | None = None, prefill_kwargs: dict | None = None) -> list[list[int]]:
    """New tokens for each prompt (a stop token, when hit, ends its row and is included).
    `prefill_kwargs` go to the prompt's forward only (a vision-language model's `images`).
    UsageError for sampling arguments out of range or a request past the model's context."""
    steps = iter_tokens(model, prompts, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                        pad_id=pad_id, seed=seed, generator=generator, prefill_kwargs=prefill_kwargs)
    stops = set(int(s) for s in stop_tokens)
    out: list[list[int]] | None = None
    done: list[bool] = []
    try:
        for nxt in steps:
            if out is None:
                out, done = [[] for _ in range(len(nxt))], [False] * len(nxt)
            for i, tok in enumerate(nxt.tolist()):
                if not done[i]:
                    out[i].append(tok)
                    done[i] = tok in stops
            if all(done):
                break
    finally:
        steps.close()
    return out or []
