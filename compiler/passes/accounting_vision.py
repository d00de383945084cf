"""Accounting of a vision-language model: the decoder as any decoder (FLOPs per token, KV
cache), plus the vision encoder's and adapter's parameters as parts of their own (they run once
per image patch, not per token, and keep no cache)."""

from __future__ import annotations

import dataclasses

from ..ir import Node
from ..ir_vision import text_view, vision_parts
from .accounting import DTYPE_BYTES, Accounting, account

PART_NAMES = {"vision_encoder": "vision", "adapter": "adapter"}


def account_vision_language(ir: Node, context: int | None = None) -> Accounting:
    text = account(text_view(ir), context)
    parts = {PART_NAMES[c.kind]: c.numel for c in vision_parts(ir)}
    extra = sum(parts.values())
    total = text.params + extra
    update: dict = {"params": total, "params_by_part": {**parts, **text.params_by_part},
                    "weight_bytes": {k: total * DTYPE_BYTES[k] for k in text.weight_bytes}}
    if hasattr(text, "active_params"):
        update["active_params"] = text.active_params + extra
    return dataclasses.replace(text, **update)


def text_params(acc: Accounting) -> int:
    """The language model's share of a vision-language model's parameters."""
    return acc.params - sum(acc.params_by_part.get(p, 0) for p in PART_NAMES.values())
