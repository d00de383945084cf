"""Pixtral's chat layout (mistral-common's v3 instruct format with images), id for id.

    <s>[INST]{user}[/INST]{assistant}</s>[INST]{user}[/INST]...

- Messages are first normalized as mistral-common does: consecutive messages of one role are
  merged (their texts joined by a blank line), system messages are pulled out and their texts
  joined into one system prompt, and a conversation that does not start with a user turn gets
  an empty one in front.
- The system prompt goes at the start of the *last* user turn, followed by a blank line.
- A user turn is its text and images in order; the one exception is a turn that is some text
  followed by a single image, where the image is moved first.
- Assistant text loses trailing spaces and ends with ``</s>``.

Messages are dicts: ``{"role": "user" | "assistant" | "system", "content": str | list}``, a list
holding ``{"type": "text", "text": ...}`` and ``{"type": "image", "image": path | bytes |
PIL.Image | array}`` items.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import groupby
from typing import Any, Union

from ..tokenizers.errors import TokenizerError
from ..tokenizers.tekken import TekkenTokenizer
from .preprocess import ImageInput, ImageProcessor, ProcessedImage

ROLES = ("system", "user", "assistant")
SEP = "\n\n"

Part = Union[str, "_Image"]  # text, or an image still to process


class _Image:
    __slots__ = ("source",)

    def __init__(self, source: ImageInput) -> None:
        self.source = source


def _parts(message: Mapping[str, Any], index: int) -> list[Part]:
    """A message's content as text and image parts, in order."""
    content = message.get("content")
    if content is None or isinstance(content, str):
        return [content] if content else []
    if not isinstance(content, Sequence):
        raise TokenizerError(f"message {index}: content must be a str or a list, got {type(content).__name__}")
    out: list[Part] = []
    for j, chunk in enumerate(content):
        kind = chunk.get("type") if isinstance(chunk, Mapping) else None
        if isinstance(chunk, str):
            out.append(chunk)
        elif kind == "text":
            out.append(str(chunk.get("text") or ""))
        elif kind == "image" and chunk.get("image") is not None:
            out.append(_Image(chunk["image"]))
        else:
            raise TokenizerError(f"message {index}, content[{j}]: expected {{'type': 'text', 'text': ...}} or "
                                 f"{{'type': 'image', 'image': ...}}, got {chunk!r:.80}")
    return out


def _merge(contents: Sequence[list[Part]]) -> list[Part]:
    """Texts between two images joined by a blank line; empty texts dropped."""
    out: list[Part] = []
    text: list[str] = []
    for parts in contents:
        for part in parts:
            if isinstance(part, _Image):
                if text:
                    out.append(SEP.join(text))
                    text = []
                out.append(part)
            elif part:
                text.append(part)
    if text:
        out.append(SEP.join(text))
    return out


def _text_only(parts: list[Part], what: str) -> str:
    if any(isinstance(p, _Image) for p in parts):
        raise TokenizerError(f"{what} cannot hold images in Pixtral's chat format")
    return "".join(parts)  # type: ignore[arg-type]


def normalize_messages(messages: Sequence[Mapping[str, Any]]) -> tuple[list[tuple[str, list[Part]]], str | None]:
    """(turns as (role, parts) alternating from a user turn, the system prompt or None)."""
    roles = []
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, Mapping) else None
        if role not in ROLES:
            raise TokenizerError(f"message {i}: role must be one of {', '.join(ROLES)}, got {role!r}")
        roles.append(role)
    system = [_text_only(_parts(m, i), "a system message") for i, m in enumerate(messages) if roles[i] == "system"]
    system = [s for s in system if s]
    turns: list[tuple[str, list[Part]]] = []
    indexed = list(enumerate(messages))
    for role, group in groupby(indexed, key=lambda im: roles[im[0]]):
        if role != "system":  # a system message still ends a run of same-role messages
            turns.append((role, _merge([_parts(m, i) for i, m in group])))
    if not turns or turns[0][0] != "user":
        turns.insert(0, ("user", []))
    return turns, SEP.join(system) if system else None


def encode_chat(tokenizer: TekkenTokenizer, messages: Sequence[Mapping[str, Any]],
                image_processor: ImageProcessor | None = None) -> tuple[list[int], list[ProcessedImage]]:
    """(prompt ids, the processed images in the order their ``[IMG]`` blocks appear).

    `image_processor` defaults to one built from the tokenizer file's ``image`` section."""
    turns, system_prompt = normalize_messages(messages)
    if image_processor is None and tokenizer.image_config is not None:
        image_processor = ImageProcessor.from_config(tokenizer.image_config)
    inst, end_inst = tokenizer.special_id("[INST]"), tokenizer.special_id("[/INST]")
    last_user = max(i for i, (role, _) in enumerate(turns) if role == "user")
    ids = [tokenizer.bos_id]
    images: list[ProcessedImage] = []
    for i, (role, parts) in enumerate(turns):
        if role == "assistant":
            text = _text_only(parts, "an assistant message")
            if not text:
                raise TokenizerError(f"assistant turn {i} is empty")
            ids += tokenizer.encode(text.rstrip(" "), bos=False) + [tokenizer.eos_id]
            continue
        prompt = system_prompt if i == last_user else None
        ids.append(inst)
        if not any(isinstance(p, _Image) for p in parts):
            text = "".join(parts)  # type: ignore[arg-type]
            ids += tokenizer.encode(f"{prompt}{SEP}{text}" if prompt else text, bos=False)
        else:
            if len(parts) >= 2 and isinstance(parts[-1], _Image) and not any(isinstance(p, _Image) for p in parts[:-1]):
                parts = [parts[-1], *parts[:-1]]
            if prompt:
                ids += tokenizer.encode(prompt + SEP, bos=False)
            for part in parts:
                if isinstance(part, _Image):
                    ids += _image_ids(tokenizer, image_processor, part, images)
                else:
                    ids += tokenizer.encode(part, bos=False)
        ids.append(end_inst)
    return ids, images


def _image_ids(tokenizer: TekkenTokenizer, processor: ImageProcessor | None, part: _Image,
               images: list[ProcessedImage]) -> list[int]:
    if processor is None:
        raise TokenizerError(f"{tokenizer.source}: the tokenizer has no image section and no image_processor was given")
    processed = processor(part.source)
    images.append(processed)
    return processor.tokens(processed, tokenizer.special_id("[IMG]"), tokenizer.special_id("[IMG_BREAK]"),
                            tokenizer.special_id("[IMG_END]"))
