"""Images in, text out: the user-level side of a vision-language model (Pixtral).

`model.chat(messages)` lays the conversation out as Pixtral's chat format (runtime/vision/chat.py:
mistral-common's layout, id for id), turns each image into pixels and its `[IMG]` block with
the model's ImageProcessor (patch size and largest side from the spec's vision encoder), and
generates the reply. `model.generate_text(prompt, images=[...])` is the same without the chat
layout: a prompt's `[IMG]` markers say where its images go (in order), and without markers the
images come first, as Pixtral's chat puts a single image before its text.

Images may be paths, bytes, PIL images, uint8 arrays, or already-normalized `[3, H, W]` float
tensors whose sides are multiples of the patch size. Errors are ValueErrors naming the problem:
`NotAnImageError`, `ImageTooLargeError` (runtime.vision.errors), `VisionInputError` and
`ImageTokenMismatch` (more or fewer `[IMG]` markers than images), and a plain ValueError for a
model without a vision encoder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .compiler.errors import UsageError
from .runtime.modules.multimodal import ImageTokenMismatch
from .runtime.vision.preprocess import ImageProcessor, ProcessedImage

MARKER = "[IMG]"  # in generate_text prompts: where the next image goes


def reads_images(arch: Any) -> bool:
    """Whether a spec's arch has a vision encoder (a vision-language kind)."""
    return getattr(arch, "vision", None) is not None


def require_vision(model: Any) -> Any:
    """The model's vision-language arch, or a ValueError saying it reads no images."""
    arch = model.spec.arch
    if not reads_images(arch) or getattr(model, "vision", None) is None:
        raise UsageError(f"{model.spec.name} has no vision encoder: it cannot read images "
                         "(use a vision-language model such as pixtral-12b)")
    return arch


def image_processor(model: Any) -> ImageProcessor:
    """Pixtral's pre-processing for this model: its patch size, images up to its image_size."""
    v = require_vision(model).vision
    return ImageProcessor(patch_size=v.patch_size, max_image_size=v.image_size)


def image_ids(arch: Any, rows: int, cols: int) -> list[int]:
    """The ids standing for a rows x cols patch grid: per row `cols` [IMG] then [IMG_BREAK], the
    last row ending with [IMG_END] instead (whichever of the two the spec has)."""
    out: list[int] = []
    for r in range(rows):
        out += [arch.image_token_id] * cols
        last = r == rows - 1
        end = arch.image_end_id if last and arch.image_end_id is not None else arch.image_break_id
        if end is not None and (last or arch.image_break_id is not None):
            out.append(end)
    return out


def process(model: Any, image: Any, index: int) -> ProcessedImage:
    """One image as pixels and its patch grid."""
    if isinstance(image, ProcessedImage):
        return image
    if isinstance(image, torch.Tensor):
        rows, cols = model.vision.grid(index, image)  # VisionInputError naming what is wrong
        return ProcessedImage(image, rows, cols)
    return model.image_processor(image)


def encode_prompt(model: Any, prompt: str, images: Sequence[Any]) -> tuple[list[int], list[torch.Tensor]]:
    """(ids, pixel tensors) of one prompt and its images."""
    tok = model._need_tokenizer()
    arch = model.spec.arch
    bos = model.spec.tokenizer.bos_id if model.spec.tokenizer else None
    ids = [bos] if bos is not None else []
    if not images:
        if MARKER in prompt and reads_images(arch):
            raise ImageTokenMismatch(f"the prompt has {prompt.count(MARKER)} {MARKER} marker(s) but no images were given")
        return ids + tok.encode(prompt, bos=False), []
    arch = require_vision(model)
    processed = [process(model, img, i) for i, img in enumerate(images)]
    pieces = prompt.split(MARKER)
    if len(pieces) == 1:  # no markers: the images first, then the text
        pieces = [""] * len(processed) + [prompt]
    if len(pieces) - 1 != len(processed):
        raise ImageTokenMismatch(f"the prompt has {len(pieces) - 1} {MARKER} marker(s) but {len(processed)} image(s) "
                                 f"were given: one marker per image, or none (the images then go first)")
    for text, img in zip(pieces, processed):
        ids += (tok.encode(text, bos=False) if text else []) + image_ids(arch, img.rows, img.cols)
    if pieces[-1]:
        ids += tok.encode(pieces[-1], bos=False)
    return ids, [p.pixels for p in processed]


def generate_with_images(model: Any, prompts: str | Sequence[str], images: Sequence[Any], max_new_tokens: int,
                         **kw: Any) -> str | list[str]:
    """generate_text with images: `images` is one list for a single prompt, or one list per
    prompt (a batch; any prompt may have none)."""
    single = isinstance(prompts, str)
    rows = [prompts] if single else list(prompts)
    per_prompt = [list(images)] if single else [list(i) for i in images]
    if len(per_prompt) != len(rows):
        raise UsageError(f"{len(rows)} prompts but {len(per_prompt)} image lists: give one list per prompt")
    if any(per_prompt):
        require_vision(model)
    encoded = [encode_prompt(model, p, imgs) for p, imgs in zip(rows, per_prompt)]
    texts = _generate(model, [ids for ids, _ in encoded], [t for _, ts in encoded for t in ts], max_new_tokens, **kw)
    return texts[0] if single else texts


def _generate(model: Any, ids: list[list[int]], pixels: list[torch.Tensor], max_new_tokens: int,
              **kw: Any) -> list[str]:
    tok = model._need_tokenizer()
    kw.setdefault("stop_tokens", model.stop_ids())
    kw.setdefault("pad_id", tok.pad_id if getattr(tok, "pad_id", None) not in (None, -1) else 0)
    out = model.generate(ids, max_new_tokens=max_new_tokens, images=pixels or None, **kw)
    return [tok.decode([t for t in row if t not in kw["stop_tokens"]]) for row in out]


def _is_conversation(messages: Any) -> bool:
    return isinstance(messages, Sequence) and (not messages or isinstance(messages[0], Mapping))


def chat(model: Any, messages: Sequence[Mapping[str, Any]] | Sequence[Sequence[Mapping[str, Any]]],
         max_new_tokens: int = 256, **kw: Any) -> str | list[str]:
    """The assistant's reply to a conversation (or to each of a batch of conversations)."""
    from .runtime.tokenizers.tekken import TekkenTokenizer
    from .runtime.vision.chat import encode_chat

    tok = model._need_tokenizer()
    if not isinstance(tok, TekkenTokenizer):
        raise UsageError(f"{model.spec.name}: chat needs a Tekken tokenizer (Pixtral's chat format), "
                         f"got {type(tok).__name__}")
    single = _is_conversation(messages)
    convs = [messages] if single else list(messages)
    processor = model.image_processor if reads_images(model.spec.arch) else None
    ids, pixels = [], []
    for conv in convs:
        row, processed = encode_chat(tok, conv, processor)
        if processed:
            require_vision(model)
        ids.append(row)
        pixels += [p.pixels for p in processed]
    replies = _generate(model, ids, pixels, max_new_tokens, **kw)
    return replies[0] if single else replies
