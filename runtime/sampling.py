"""Next-token choice: greedy, temperature, top-k, top-p (nucleus), and the checks on their
arguments (transformers' rules: temperature >= 0 and finite, top_k >= 0, 0 < top_p <= 1)."""

from __future__ import annotations

import math
from typing import Any

import torch

from .errors import UsageError


def _number(name: str, value: Any, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise UsageError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not integer and not math.isfinite(value):
        raise UsageError(f"{name} must be finite, got {value!r}")


def check_sampling(temperature: Any = 0.0, top_k: Any = None, top_p: Any = None) -> None:
    """UsageError naming the first sampling argument out of range."""
    _number("temperature", temperature)
    if temperature < 0:
        raise UsageError(f"temperature must be >= 0 (0 is greedy), got {temperature!r}")
    if top_k is not None:
        _number("top_k", top_k, integer=True)
        if top_k < 0:
            raise UsageError(f"top_k must be >= 0 (0 keeps every token), got {top_k!r}")
    if top_p is not None:
        _number("top_p", top_p)
        if not 0 < top_p <= 1:
            raise UsageError(f"top_p must be in (0, 1], got {top_p!r}")


def check_length(max_new_tokens: Any, prompt_len: int, context: int | None) -> None:
    """max_new_tokens a positive integer, and the prompt plus it within the model's context."""
    _number("max_new_tokens", max_new_tokens, integer=True)
    if max_new_tokens < 1:
        raise UsageError(f"max_new_tokens must be >= 1, got {max_new_tokens!r}")
    if context is not None and prompt_len + max_new_tokens > context:
        raise UsageError(f"a {prompt_len}-token prompt plus max_new_tokens={max_new_tokens} is "
                         f"{prompt_len + max_new_tokens} tokens, past the model's context of {context} (max_seq_len): "
                         f"ask for at most {max(0, context - prompt_len)} new tokens")


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the smallest nucleus of mass top_p."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the mass before it already reaches top_p (the first always stays)
        drop = (probs.cumsum(-1) - probs) >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def sample(logits: torch.Tensor, temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, V) logits → (B,) token ids. temperature 0 is greedy."""
    if temperature <= 0.0:
        return logits.argmax(-1)
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
