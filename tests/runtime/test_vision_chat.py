"""Pixtral's chat layout: ids and images identical to mistral-common's MistralTokenizer (Tekken +
image encoder) for one and several images, system prompts and multi-turn conversations."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mistral_common.protocol.instruct.request import ChatCompletionRequest
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
from PIL import Image
from zoo.runtime.tokenizers import TekkenTokenizer, TokenizerError
from zoo.runtime.vision import ImageProcessor, encode_chat, normalize_messages

from tests.tekken_files import trained_ranks, write_tekken

RNG = np.random.default_rng(0)


def _img(w: int, h: int, mode: str = "RGB") -> Image.Image:
    return Image.fromarray(RNG.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA").convert(mode)


A, B, C, D = _img(40, 20), _img(100, 300, "RGBA"), _img(1100, 50), _img(33, 33, "L")


def _user(*chunks: Any) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "image", "image": c} if isinstance(c, Image.Image)
                                        else {"type": "text", "text": c} for c in chunks]}


CONVERSATIONS = {
    "image-then-text": [_user(A, "What is in this picture?")],
    "text-then-image": [_user("Describe this:", A)],  # moved first, as mistral-common does
    "only-image": [_user(B)],
    "several-images": [_user("Compare", A, "with", B, "and", C)],
    "two-texts-one-image": [_user("first", "second", D)],
    "multi-turn": [
        {"role": "system", "content": "You are terse."},
        _user("A", A, "B", B),
        {"role": "assistant", "content": "Two pictures.  "},  # trailing spaces dropped
        _user("and", "this", C),
        {"role": "assistant", "content": "A wide one."},
        _user("Thanks! 🙂"),
    ],
    "merged-turns": [
        {"role": "system", "content": "sys one"},
        {"role": "system", "content": [{"type": "text", "text": "sys two"}]},
        {"role": "user", "content": "hi"},
        {"role": "user", "content": "there"},
        {"role": "assistant", "content": "yo"},
        {"role": "assistant", "content": [{"type": "text", "text": "again"}]},
        _user(B, "last"),
    ],
    "system-with-images": [{"role": "system", "content": "S"}, _user(A, D)],
    "assistant-first": [{"role": "assistant", "content": "first"}, {"role": "user", "content": "q"}],
    "system-splits-user": [{"role": "user", "content": "q1"}, {"role": "system", "content": "mid"},
                           {"role": "user", "content": "q2"}],
    "text-only": [{"role": "user", "content": "Hello\n\nworld"}],
}


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory: pytest.TempPathFactory) -> tuple[TekkenTokenizer, MistralTokenizer]:
    path = write_tekken(tmp_path_factory.mktemp("pixtral") / "tekken.json", trained_ranks(),
                        image={"image_patch_size": 16, "max_image_size": 1024})
    return TekkenTokenizer.from_file(path), MistralTokenizer.from_file(str(path))


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_matches_mistral_common(name: str, tokenizers: tuple[TekkenTokenizer, MistralTokenizer]) -> None:
    ours, ref = tokenizers
    messages = CONVERSATIONS[name]
    want = ref.encode_chat_completion(ChatCompletionRequest(messages=messages))
    ids, images = encode_chat(ours, messages)
    assert ids == want.tokens, f"\nours: {ours.decode(ids, keep_special=True)!r}\nref:  {want.text!r}"
    assert len(images) == len(want.images) == ids.count(13)
    for got, ref_image in zip(images, want.images):
        np.testing.assert_allclose(got.pixels.numpy(), ref_image, atol=1e-5, rtol=0)
    assert sum(im.rows * im.cols for im in images) == ids.count(10)


def test_image_inputs_and_processor(tokenizers: tuple[TekkenTokenizer, MistralTokenizer], tmp_path: Path) -> None:
    ours, _ = tokenizers
    buf = io.BytesIO()
    A.save(buf, format="PNG")
    (tmp_path / "a.png").write_bytes(buf.getvalue())
    base, _ = encode_chat(ours, [_user(A, "x")])
    for source in (tmp_path / "a.png", str(tmp_path / "a.png"), buf.getvalue(), np.asarray(A)):
        ids, images = encode_chat(ours, [{"role": "user", "content": [{"type": "image", "image": source}, "x"]}])
        assert ids == base and (images[0].rows, images[0].cols) == (2, 3)
    ids, images = encode_chat(ours, [_user(A)], ImageProcessor(max_image_size=16))
    assert (images[0].rows, images[0].cols) == (1, 1) and ids[1:4] == [3, 10, 13]


def test_normalize_and_errors(tokenizers: tuple[TekkenTokenizer, MistralTokenizer]) -> None:
    ours, _ = tokenizers
    turns, system = normalize_messages([{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}])
    assert turns == [("user", []), ("assistant", ["a"])] and system == "s"
    with pytest.raises(TokenizerError, match="role"):
        encode_chat(ours, [{"role": "robot", "content": "x"}])
    with pytest.raises(TokenizerError, match="content"):
        encode_chat(ours, [{"role": "user", "content": [{"type": "video"}]}])
    with pytest.raises(TokenizerError, match="assistant message cannot hold images"):
        encode_chat(ours, [_user("x"), {"role": "assistant", "content": [{"type": "image", "image": A}]}])
    with pytest.raises(TokenizerError, match="empty"):
        encode_chat(ours, [_user("x"), {"role": "assistant", "content": ""}])
    plain = TekkenTokenizer.from_file(write_tekken(Path(ours.source).parent / "plain" / "tekken.json", trained_ranks(50)))
    with pytest.raises(TokenizerError, match="no image section"):
        encode_chat(plain, [_user(A)])
