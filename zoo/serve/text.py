"""Chat prompts for the server: the model's chat format (zoo.chat) as prompt ids, and what ends
an assistant turn."""

from __future__ import annotations

from typing import Any

from ..compiler.errors import UsageError


def render_chat_prompt(model: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of `messages` in the model's chat format, ready for the assistant's reply;
    UsageError when the model has none (or no tokenizer)."""
    from ..chat import render_chat

    if getattr(model, "tokenizer", None) is None:
        raise UsageError(f"model {model.spec.name!r} has no tokenizer: chat needs one")
    return list(render_chat(model.tokenizer, model.spec.tokenizer, messages, add_generation_prompt=True,
                            model_name=model.spec.name))


def chat_stops(model: Any) -> tuple[list[int], list[str]]:
    """(token ids, strings) that end an assistant turn in the model's chat format (e.g.
    Llama-3's <|eot_id|>, ChatML's <|im_end|>), beyond the model's own stop tokens."""
    from ..chat import stops

    return stops(model.tokenizer, model.spec.tokenizer, model.spec.name)
