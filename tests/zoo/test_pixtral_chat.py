"""The user-level image API on a tiny random Pixtral-shaped checkpoint with a Tekken tokenizer
written by the test: `m.chat(messages)`, `m.generate_text(prompt, images=[...])` and
`zoo generate MODEL --image a.png ...`, with 0, 1 and 3 images, batches equal to their rows run
alone, a long prompt, and the typed errors (not an image, too large, [IMG] markers that do not
match the images, a model without a vision encoder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from zoo.runtime.modules.multimodal import ImageTokenMismatch
from zoo.runtime.modules.vision import VisionInputError
from zoo.runtime.vision import (
    ImageProcessor,
    ImageTooLargeError,
    NotAnImageError,
    encode_chat,
)

import zoo
from tests.runtime.test_pixtral_parity import tiny
from tests.tekken_files import trained_ranks, write_tekken
from zoo.cli import main as cli

N_MERGES = 200
VOCAB = 1000 + 256 + N_MERGES  # Tekken: 1000 control ids, then the ranks
NEW = 6


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from zoo.runtime.tokenizers import TekkenTokenizer

    root = tmp_path_factory.mktemp("pixtral")
    m = tiny("sdpa", f"arch.text.vocab_size={VOCAB}", "arch.text.max_seq_len=1024")  # prompts of 500 tokens
    m.tokenizer = TekkenTokenizer.from_file(write_tekken(root / "tok" / "tekken.json", trained_ranks(N_MERGES)))
    return m.save(root / "tiny-pixtral")


@pytest.fixture(scope="module")
def model(folder: Path) -> Any:
    return zoo.load(folder, backend="sdpa").eval()


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three image files of different sizes (the last larger than the model's 32 px: resized)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    out = []
    for i, (w, h) in enumerate(((20, 12), (9, 30), (100, 60))):
        p = root / f"img{i}.{'png' if i != 1 else 'jpg'}"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p)
        out.append(p)
    return out


def _user(text: str, imgs: list[Path]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [*({"type": "image", "image": str(p)} for p in imgs),
                                         {"type": "text", "text": text}]}]


def _reference_reply(m: Any, messages: list[dict[str, Any]]) -> tuple[str, list[int], list[torch.Tensor]]:
    """What chat must return, from the parts: encode_chat, then generate with the pixels."""
    ids, processed = encode_chat(m.tokenizer, messages, m.image_processor)
    pixels = [p.pixels for p in processed]
    out = m.generate([ids], max_new_tokens=NEW, images=pixels or None, stop_tokens=[2], pad_id=m.tokenizer.pad_id)[0]
    return m.tokenizer.decode([t for t in out if t != 2]), ids, pixels


def test_image_processor_comes_from_the_spec(model: Any) -> None:
    proc = model.image_processor
    assert (proc.patch_size, proc.max_image_size) == (4, 32)


@pytest.mark.parametrize("n_images", [0, 1, 3])
def test_chat_with_any_number_of_images(model: Any, pictures: list[Path], n_images: int) -> None:
    messages = _user("What is in these pictures?", pictures[:n_images])
    reply = model.chat(messages, max_new_tokens=NEW)
    want, ids, pixels = _reference_reply(model, messages)
    assert isinstance(reply, str) and reply == want
    grids = [(3, 5), (8, 3), (5, 8)][:n_images]  # ceil(side / 4) after shrinking to at most 32 px
    assert [tuple(p.shape[1:]) for p in pixels] == [(4 * r, 4 * c) for r, c in grids]
    assert ids.count(10) == sum(r * c for r, c in grids)  # one [IMG] per patch
    assert ids.count(12) == sum(r - 1 for r, _ in grids) and ids.count(13) == n_images
    with torch.no_grad():  # the first reply token is the forward's argmax at the prompt's end
        first = model(torch.tensor([ids]), images=pixels or None)[0, -1].argmax().item()
    out = model.generate([ids], max_new_tokens=1, images=pixels or None)[0]
    assert out == [first]


def test_batch_of_conversations_equals_each_alone(model: Any, pictures: list[Path]) -> None:
    convs = [_user("Compare them.", pictures[:2]), _user("And this one, longer question?", pictures[2:])]
    both = model.chat(convs, max_new_tokens=NEW)
    assert both == [model.chat(c, max_new_tokens=NEW) for c in convs]


def test_generate_text_with_images_batch_equals_each_alone(model: Any, pictures: list[Path]) -> None:
    prompts = ["A [IMG] and a [IMG] side by side:", "This one"]
    imgs = [pictures[:2], pictures[2:]]
    both = model.generate_text(prompts, images=imgs, max_new_tokens=NEW)
    assert both == [model.generate_text(p, images=i, max_new_tokens=NEW) for p, i in zip(prompts, imgs)]
    # markers place the images; without markers they come first: same ids either way here
    from zoo.vlm import encode_prompt

    marked, _ = encode_prompt(model, "[IMG]This one", pictures[2:])
    first, _ = encode_prompt(model, "This one", pictures[2:])
    assert marked == first and first[0] == 1 and first[1] == 10 and first.count(10) == 5 * 8


def test_long_prompt_with_images(model: Any, pictures: list[Path]) -> None:
    text = " ".join(f"word{i}" for i in range(80)) + " What do the pictures show?"
    messages = _user(text, pictures)
    reply = model.chat(messages, max_new_tokens=NEW)
    want, ids, _ = _reference_reply(model, messages)
    assert len(ids) > 200 and reply == want


def test_pixel_tensors_are_accepted(model: Any) -> None:
    g = torch.Generator().manual_seed(0)
    img = torch.randn(3, 8, 12, generator=g)
    out = model.generate_text("look", images=[img], max_new_tokens=NEW)
    assert isinstance(out, str)


# ------------------------------------------------------------------------------- errors
def test_not_an_image(model: Any, tmp_path: Path) -> None:
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    with pytest.raises(NotAnImageError, match="notes.png: not an image format"):
        model.chat(_user("?", [bad]))
    with pytest.raises(NotAnImageError, match="no such image file"):
        model.generate_text("?", images=[tmp_path / "missing.png"])


def test_image_too_large(model: Any, pictures: list[Path]) -> None:
    with pytest.raises(VisionInputError, match=r"36x8 is larger than the model's 32x32"):
        model.generate_text("?", images=[torch.randn(3, 36, 8)])
    saved = model.image_processor
    model.image_processor = ImageProcessor(patch_size=4, max_image_size=32, max_pixels=1000)
    try:
        with pytest.raises(ImageTooLargeError, match=r"100 x 60 = 6000 pixels; the limit is 1000"):
            model.chat(_user("?", pictures[2:]))
    finally:
        model.image_processor = saved


def test_image_markers_and_tokens_must_match_the_images(model: Any, pictures: list[Path]) -> None:
    with pytest.raises(ImageTokenMismatch, match=r"3 \[IMG\] marker\(s\) but 2 image\(s\)"):
        model.generate_text("[IMG] [IMG] [IMG]", images=pictures[:2])
    with pytest.raises(ImageTokenMismatch, match=r"1 \[IMG\] marker\(s\) but 2 image\(s\)"):
        model.generate_text("[IMG] and", images=pictures[:2])
    with pytest.raises(ImageTokenMismatch, match=r"2 \[IMG\] marker\(s\) but no images"):
        model.generate_text("[IMG] [IMG]", images=[])
    with pytest.raises(ValueError, match="2 prompts but 1 image lists"):
        model.generate_text(["a", "b"], images=[pictures[:1]])
    # token ids: more [IMG] tokens than the images' patches, and fewer
    ids, processed = encode_chat(model.tokenizer, _user("?", pictures[:1]), model.image_processor)
    pixels = [p.pixels for p in processed]
    with pytest.raises(ImageTokenMismatch, match=r"has 16 \[IMG\] tokens .* have 15 patches"):
        model.generate([ids[:3] + [10] + ids[3:]], images=pixels, max_new_tokens=1)
    with pytest.raises(ImageTokenMismatch, match=r"has 14 \[IMG\] tokens .* have 15 patches"):
        model.generate([ids[:2] + ids[3:]], images=pixels, max_new_tokens=1)


def test_a_text_model_cannot_read_images(tmp_path: Path, pictures: list[Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from tests.zoo.weights_fixtures import tiny as tiny_llama

    m = tiny_llama()
    with pytest.raises(ValueError, match="has no vision encoder"):
        m.generate_text("hi", images=pictures[:1])
    folder = m.save(tmp_path / "llama")
    assert cli(["generate", str(folder), "hi", "--image", str(pictures[0])]) == 2
    assert "has no vision encoder" in capsys.readouterr().err


# ------------------------------------------------------------------------------- CLI
def test_cli_generate_with_images(folder: Path, model: Any, pictures: list[Path],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    prompt = "Compare [IMG] with [IMG]:"
    args = ["generate", str(folder), prompt, "--image", str(pictures[0]), "--image", str(pictures[1]),
            "--max-new-tokens", str(NEW), "--backend", "sdpa"]
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert out == model.generate_text(prompt, images=pictures[:2], max_new_tokens=NEW) + "\n"


def test_cli_reports_bad_images(folder: Path, pictures: list[Path], tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "fake.jpg"
    bad.write_bytes(b"\x00" * 64)
    assert cli(["generate", str(folder), "?", "--image", str(bad), "--max-new-tokens", "2"]) == 2
    assert "fake.jpg: not an image format" in capsys.readouterr().err
    assert cli(["generate", str(folder), "[IMG] [IMG]", "--image", str(pictures[0]), "--max-new-tokens", "2"]) == 2
    assert "2 [IMG] marker(s) but 1 image(s)" in capsys.readouterr().err
