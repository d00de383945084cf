"""Pixtral image pre-processing: pixels (atol 1e-5) and image tokens identical to
mistral-common's ImageEncoder across modes, sizes and aspect ratios; every input kind; typed
errors and size guards."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from mistral_common.protocol.instruct.chunk import ImageChunk
from mistral_common.tokens.tokenizers.image import ImageConfig, ImageEncoder, SpecialImageIDs
from PIL import Image
from zoo.runtime.vision import (
    EmptyImageError,
    ImageProcessor,
    ImageTooLargeError,
    NotAnImageError,
    image_token_layout,
)

REF = ImageEncoder(ImageConfig(image_patch_size=16, max_image_size=1024), SpecialImageIDs(img=10, img_break=12, img_end=13))
PROC = ImageProcessor()


def _image(w: int, h: int, mode: str, seed: int, smooth: bool = False) -> Image.Image:
    rng = np.random.default_rng(seed)
    if smooth:  # gradients plus a few hard edges, like a photo
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 / max(w, 1), yy * 255 / max(h, 1), (xx + yy) % 64 * 4, (xx * 7) % 256], -1)
        rgba = np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)
    else:  # noise: the worst case for any difference in the resize
        rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    img = Image.fromarray(rgba, "RGBA")
    if mode == "P":
        img = img.convert("RGB").convert("P")
        img.info["transparency"] = 3
        return img
    return img if mode == "RGBA" else img.convert(mode)


CASES = [  # (width, height, mode, smooth)
    (32, 32, "RGB", False),  # already whole patches: no resize
    (1, 1, "RGB", False),  # tiny: stretched to one patch
    (17, 5, "RGBA", False),  # transparency on white, up to 32 x 16
    (100, 37, "L", True),
    (64, 48, "P", False),  # palette with a transparent index
    (333, 777, "LA", False),  # tall, non-multiple of 16
    (700, 1, "RGB", False),  # one pixel high (OpenCV's path for sides under 4 px)
    (1, 300, "RGBA", False),
    (3, 500, "RGB", False),
    (4, 500, "RGB", False),
    (1100, 900, "RGB", False),
    (1024, 1024, "RGB", True),  # exactly the limit
    (1025, 300, "RGBA", False),  # just over: shrinks
    (1500, 700, "RGB", False),  # huge
    (2050, 1300, "RGB", True),
    (3000, 20, "RGB", False),  # extreme aspect ratio
    (640, 480, "CMYK", False),
    (50, 61, "I", True),  # 32-bit greyscale
]


@pytest.mark.parametrize("case", CASES, ids=[f"{w}x{h}-{m}" for w, h, m, _ in CASES])
def test_matches_mistral_common(case: tuple[int, int, str, bool]) -> None:
    w, h, mode, smooth = case
    img = _image(w, h, mode, seed=w * 7 + h, smooth=smooth)
    ref = REF(ImageChunk(image=img))
    ours = PROC(img)
    assert ours.pixels.dtype.is_floating_point and ours.pixels.dtype.itemsize == 4
    assert tuple(ours.pixels.shape) == ref.image.shape == (3, ours.rows * 16, ours.cols * 16)
    np.testing.assert_allclose(ours.pixels.numpy(), ref.image, atol=1e-5, rtol=0)
    assert PROC.tokens(ours) == image_token_layout(ours.rows, ours.cols) == ref.tokens
    assert max(ours.rows, ours.cols) <= 64


def test_every_input_kind_gives_the_same_tensor(tmp_path: Path) -> None:
    img = _image(90, 50, "RGB", seed=3)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    (tmp_path / "a.png").write_bytes(buf.getvalue())
    want = PROC(img)
    for source in (tmp_path / "a.png", str(tmp_path / "a.png"), buf.getvalue(), bytearray(buf.getvalue()),
                   np.asarray(img)):
        got = PROC(source)
        assert (got.rows, got.cols) == (want.rows, want.cols) == (4, 6)
        assert got.pixels.equal(want.pixels)
    grey = np.asarray(img.convert("L"))
    assert PROC(grey).pixels.equal(PROC(img.convert("L")).pixels)
    assert PROC(grey[:, :, None]).pixels.equal(PROC(grey).pixels)
    rgba = np.asarray(_image(20, 20, "RGBA", seed=4))
    assert PROC(rgba).pixels.equal(PROC(Image.fromarray(rgba, "RGBA")).pixels)


def test_token_layout() -> None:
    assert image_token_layout(1, 1) == [10, 13]
    assert image_token_layout(2, 3) == [10, 10, 10, 12, 10, 10, 10, 13]
    assert image_token_layout(2, 1, img=5, brk=6, end=7) == [5, 6, 5, 7]
    assert len(image_token_layout(64, 64)) == 64 * 65
    with pytest.raises(EmptyImageError):
        image_token_layout(0, 3)


def test_config_and_grid() -> None:
    proc = ImageProcessor.from_config({"image_patch_size": 14, "max_image_size": 512})
    assert (proc.patch_size, proc.max_image_size) == (14, 512)
    assert proc.grid(1024, 256) == (10, 37)  # shrinks to 512 x 128, then ceil(/14)
    assert PROC.grid(4000, 1) == (1, 64) and PROC.grid(15, 17) == (2, 1)


def test_errors_are_typed(tmp_path: Path) -> None:
    with pytest.raises(NotAnImageError, match="not an image format"):
        PROC(b"definitely not an image")
    with pytest.raises(NotAnImageError, match="no such image file"):
        PROC(tmp_path / "missing.png")
    with pytest.raises(NotAnImageError, match="expected an image"):
        PROC(12345)  # type: ignore[arg-type]
    with pytest.raises(NotAnImageError, match="uint8"):
        PROC(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(NotAnImageError, match="shape"):
        PROC(np.zeros((4, 4, 2), dtype=np.uint8))
    buf = io.BytesIO()
    _image(64, 64, "RGB", seed=1).save(buf, format="PNG")
    with pytest.raises(NotAnImageError, match="corrupt"):
        PROC(buf.getvalue()[: len(buf.getvalue()) // 2])  # truncated
    with pytest.raises(EmptyImageError):
        PROC(Image.new("RGB", (0, 5)))
    with pytest.raises(EmptyImageError):
        PROC(np.zeros((0, 5, 3), dtype=np.uint8))
    small = ImageProcessor(max_pixels=1000, max_file_bytes=10_000)
    with pytest.raises(ImageTooLargeError, match="pixels"):
        small(Image.new("RGB", (40, 30)))
    with pytest.raises(ImageTooLargeError, match="4096 pixels"):
        ImageProcessor(max_pixels=1000)(buf.getvalue())  # 64 x 64 from the header, before decoding
    (tmp_path / "big.png").write_bytes(buf.getvalue() + b"\0" * 20_000)
    with pytest.raises(ImageTooLargeError, match="bytes"):
        small(tmp_path / "big.png")
    with pytest.raises(ImageTooLargeError, match="bytes"):
        small(b"\0" * 20_000)
    assert issubclass(ImageTooLargeError, ValueError)
