"""Pixtral image pre-processing, pixel-for-pixel what mistral-common's ``ImageEncoder`` does.

1. Load (path, bytes, ``PIL.Image`` or a uint8 array) behind size guards, so a hostile file
   cannot make us decode a gigapixel image.
2. To RGB: any other mode goes through RGBA and is pasted on white (transparency is white).
3. Size: if a side exceeds ``max_image_size`` (1024) both shrink by the same ratio (Python
   ``round``, at least 1 px). Each side is then covered by whole patches (``ceil(side / 16)``),
   and the image is resized to exactly that many patches: small or uneven images are
   *stretched up* to the next multiple of 16, as mistral-common does.
4. Resize: bicubic (a = -0.75, half-pixel centres, edge pixels repeated, no antialiasing),
   which is OpenCV's ``INTER_CUBIC`` (sample positions as it computes them), on
   float32 values in [0, 255].
5. Normalize with the CLIP mean/std, channels first.

Token layout: per patch row, ``cols`` ``[IMG]`` then ``[IMG_BREAK]``; the last row ends with
``[IMG_END]`` instead.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import EmptyImageError, ImageTooLargeError, NotAnImageError

ImageInput = str | os.PathLike | bytes | bytearray | Image.Image | np.ndarray

#: CLIP's per-channel statistics (RGB), which Pixtral's vision encoder was trained with.
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

#: Pixtral's control tokens for images.
IMG, IMG_BREAK, IMG_END = 10, 12, 13


class ProcessedImage(NamedTuple):
    pixels: torch.Tensor  # float32 [3, rows * patch, cols * patch]
    rows: int  # patch rows (token rows)
    cols: int  # patches per row


def image_token_layout(rows: int, cols: int, img: int = IMG, brk: int = IMG_BREAK, end: int = IMG_END) -> list[int]:
    """The ids standing for a ``rows`` x ``cols`` patch grid."""
    if rows < 1 or cols < 1:
        raise EmptyImageError(f"an image needs at least one patch, got {rows} x {cols}")
    ids = ([img] * cols + [brk]) * rows
    ids[-1] = end
    return ids


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparent pixels composited on white."""
    if image.mode == "RGB":
        return image
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, "WHITE")
    canvas.paste(rgba, (0, 0), rgba)
    return canvas.convert("RGB")


def _cubic_taps(src: int, dst: int, wide: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices and weights ([dst, 4]) of a bicubic resize along one axis.

    Sample positions follow OpenCV, which has two paths: images at least 4 px on both sides keep
    positions and their fractions in float64; narrower ones round the position to float32
    first (`wide` picks). Near x = 1000 float32 moves a sample by up to 6e-5 px, which on a
    sharp edge is 1e-4 after normalizing, ten times the tolerance. Keys' kernel (a = -0.75)
    is evaluated in float32 as OpenCV does."""
    scale = 1.0 / (dst / src)
    pos = (np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5
    if not wide:
        pos = pos.astype(np.float32)
    base = np.floor(pos)
    t = (pos - base).astype(np.float32)
    a, one = np.float32(-0.75), np.float32(1.0)
    u, v = t + one, one - t
    w0 = ((a * u - np.float32(5) * a) * u + np.float32(8) * a) * u - np.float32(4) * a
    w1 = ((a + np.float32(2)) * t - (a + np.float32(3))) * t * t + one
    w2 = ((a + np.float32(2)) * v - (a + np.float32(3))) * v * v + one
    w3 = one - w0 - w1 - w2
    idx = np.clip(base.astype(np.int64)[:, None] + np.arange(-1, 3), 0, src - 1)  # edges repeat
    return torch.from_numpy(idx), torch.from_numpy(np.stack([w0, w1, w2, w3], axis=1))


def resize_bicubic(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic resize of a float32 [C, H, W] tensor as OpenCV's ``INTER_CUBIC`` (rows, then
    columns); no antialiasing when shrinking (mistral-common has none)."""
    if x.shape[-2:] == (height, width):
        return x
    wide = min(x.shape[-2:]) >= 4
    idx, w = _cubic_taps(x.shape[-1], width, wide)
    x = (x[:, :, idx] * w).sum(-1)  # [C, H, width]
    idx, w = _cubic_taps(x.shape[-2], height, wide)
    return (x[:, idx, :] * w[:, :, None]).sum(2)  # [C, height, width]


@dataclass(frozen=True)
class ImageProcessor:
    """Turns images into Pixtral's pixel tensors and patch grids.

    ``max_pixels`` and ``max_file_bytes`` guard decoding (raise ``ImageTooLargeError``); they
    are checked before any pixel is decoded."""

    patch_size: int = 16
    max_image_size: int = 1024
    spatial_merge_size: int = 1
    max_pixels: int = 1 << 26  # 64 Mpx: well beyond any camera image, below PIL's bomb limit
    max_file_bytes: int = 64 << 20
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD

    @classmethod
    def from_config(cls, config: dict[str, Any] | None, **kw: Any) -> ImageProcessor:
        """From a tekken.json ``image`` section (``image_patch_size``, ``max_image_size``, ...)."""
        config = config or {}
        keys = {"image_patch_size": "patch_size", "max_image_size": "max_image_size",
                "spatial_merge_size": "spatial_merge_size"}
        return cls(**{ours: int(config[theirs]) for theirs, ours in keys.items() if theirs in config}, **kw)

    # --- loading ----------------------------------------------------------------------------
    def load(self, image: ImageInput) -> Image.Image:
        """A decoded ``PIL.Image`` (any mode) from any accepted input."""
        if isinstance(image, Image.Image):
            self._check_size(image.size, "image")
            return image
        if isinstance(image, np.ndarray):
            return self._from_array(image)
        if isinstance(image, (bytes, bytearray)):
            if len(image) > self.max_file_bytes:
                raise ImageTooLargeError(f"image data is {len(image)} bytes; the limit is {self.max_file_bytes}")
            return self._decode(io.BytesIO(bytes(image)), "image data")
        if isinstance(image, (str, os.PathLike)):
            path = Path(image)
            if not path.is_file():
                raise NotAnImageError(f"{path}: no such image file")
            size = path.stat().st_size
            if size > self.max_file_bytes:
                raise ImageTooLargeError(f"{path}: {size} bytes; the limit is {self.max_file_bytes}")
            with path.open("rb") as f:
                return self._decode(io.BytesIO(f.read()), os.fspath(path))
        raise NotAnImageError(f"expected an image path, bytes, PIL.Image or uint8 array, got {type(image).__name__}")

    def _check_size(self, size: tuple[int, int], what: str) -> None:
        w, h = size
        if w <= 0 or h <= 0:
            raise EmptyImageError(f"{what} is {w} x {h} pixels")
        if w * h > self.max_pixels:
            raise ImageTooLargeError(f"{what} is {w} x {h} = {w * h} pixels; the limit is {self.max_pixels}")

    def _decode(self, data: io.BytesIO, what: str) -> Image.Image:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(data)
                self._check_size(img.size, what)  # from the header: nothing decoded yet
                img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageTooLargeError(f"{what}: {e}") from None
        except UnidentifiedImageError:
            raise NotAnImageError(f"{what}: not an image format PIL can read") from None
        except (OSError, SyntaxError, ValueError) as e:
            if isinstance(e, (EmptyImageError, ImageTooLargeError)):
                raise
            raise NotAnImageError(f"{what}: corrupt image ({e})") from None
        return img

    def _from_array(self, a: np.ndarray) -> Image.Image:
        if a.dtype != np.uint8:
            raise NotAnImageError(f"image arrays must be uint8 (0-255), got {a.dtype}")
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[:, :, 0]
        if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
            raise NotAnImageError(f"image arrays are H x W, H x W x 3 or H x W x 4; got shape {tuple(a.shape)}")
        self._check_size((a.shape[1], a.shape[0]), "image array")
        return Image.fromarray(np.ascontiguousarray(a))

    # --- geometry ---------------------------------------------------------------------------
    def grid(self, width: int, height: int) -> tuple[int, int]:
        """(rows, cols) of tokens for an image of ``width`` x ``height`` pixels."""
        w: float = width
        h: float = height
        ratio = max(w / self.max_image_size, h / self.max_image_size)
        if ratio > 1:
            w, h = max(round(w / ratio), 1), max(round(h / ratio), 1)
        unit = self.patch_size * self.spatial_merge_size
        return (int(h) - 1) // unit + 1, (int(w) - 1) // unit + 1

    # --- the whole pipeline -----------------------------------------------------------------
    def __call__(self, image: ImageInput) -> ProcessedImage:
        img = self.load(image)
        rows, cols = self.grid(*img.size)
        unit = self.patch_size * self.spatial_merge_size
        rgb = np.asarray(to_rgb(img), dtype=np.float32)  # H, W, 3 in [0, 255]
        x = torch.from_numpy(rgb).permute(2, 0, 1)
        x = resize_bicubic(x, rows * unit, cols * unit) / torch.tensor(255.0)
        x = (x - torch.tensor(self.mean).view(3, 1, 1)) / torch.tensor(self.std).view(3, 1, 1)
        return ProcessedImage(x.contiguous(), rows, cols)

    def tokens(self, processed: ProcessedImage, img: int = IMG, brk: int = IMG_BREAK, end: int = IMG_END) -> list[int]:
        return image_token_layout(processed.rows, processed.cols, img, brk, end)


def preprocess_image(image: ImageInput, **kw: Any) -> ProcessedImage:
    """``ImageProcessor(**kw)(image)``."""
    return ImageProcessor(**kw)(image)
