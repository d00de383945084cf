"""Named hostile generation inputs, shared by the tests and bench/hostile.py: sampling arguments,
token ids, CLI flags, images (files and objects), on the shipped tiny-code model and a tiny
Pixtral."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

VOCAB = 4096  # tiny-code's vocabulary
CONTEXT = 1024  # and context
PROMPT = "def f("


def gen_text(model: Any, prompt: Any = PROMPT, **kw: Any) -> str:
    kw.setdefault("max_new_tokens", 2)
    return repr(model.generate_text(prompt, **kw))


def gen_ids(model: Any, prompts: Any, **kw: Any) -> str:
    kw.setdefault("max_new_tokens", 2)
    return repr(model.generate(prompts, **kw))


#: sampling arguments transformers accepts
GOOD_GENERATION: list[dict[str, Any]] = [
    {}, {"temperature": 0.0}, {"temperature": 0.7, "seed": 1}, {"temperature": 1.0, "top_k": 5, "seed": 2},
    {"temperature": 0.9, "top_p": 0.9, "seed": 3}, {"temperature": 0.5, "top_p": 1.0, "seed": 4},
    {"temperature": 1.2, "top_k": 0, "seed": 5}, {"temperature": 0.8, "top_k": 4096, "top_p": 0.5, "seed": 6},
    {"max_new_tokens": 1}, {"max_new_tokens": 3, "temperature": 1e-3, "seed": 7},
]
#: sampling arguments out of range or of the wrong type
BAD_GENERATION: list[dict[str, Any]] = [
    {"max_new_tokens": -1}, {"max_new_tokens": 0}, {"max_new_tokens": -(10**9)}, {"max_new_tokens": 1.5},
    {"max_new_tokens": "8"}, {"max_new_tokens": 1025}, {"max_new_tokens": 10**6},
    {"max_new_tokens": 2**63}, {"max_new_tokens": float("nan")},
    {"temperature": float("nan")}, {"temperature": float("inf")}, {"temperature": -1.0}, {"temperature": -1e-9},
    {"temperature": float("-inf")}, {"temperature": "hot"}, {"temperature": [1.0]},
    {"temperature": 1.0, "top_k": -1}, {"temperature": 1.0, "top_k": 1.5}, {"temperature": 1.0, "top_k": "x"},
    {"temperature": 1.0, "top_p": 0.0}, {"temperature": 1.0, "top_p": -0.1}, {"temperature": 1.0, "top_p": 1.5},
    {"temperature": 1.0, "top_p": 2.0}, {"temperature": 1.0, "top_p": float("nan")},
    {"temperature": 1.0, "top_p": float("inf")}, {"temperature": 1.0, "seed": "abc"},
    {"top_k": -1}, {"top_p": 2.0}, {"top_p": 0.0}, {"top_k": 1.5},
]


BAD_PROMPT_IDS: dict[str, Any] = {
    "a negative id": [[1, -1]], "the vocabulary size": [[1, VOCAB]], "a huge id": [[1, 10**12]],
    "an id past int64": [[1, 2**64]], "a float id": [[1, 1.5]], "a string id": [[1, "a"]], "a None id": [[1, None]],
    "an empty prompt": [[]], "no prompts": [], "a float tensor": torch.tensor([[1.5, 2.0]]),
    "a 3-d tensor": torch.ones(1, 1, 2, dtype=torch.long), "a prompt longer than the context": [[5] * (CONTEXT + 10)],
    "a nested prompt": [[[1, 2]]],
}


CLI_GENERATE_BAD = [
    ["--dtype", "float7"], ["--dtype", "int8"], ["--dtype", "bool"], ["--dtype", "Tensor"], ["--device", "nonsense"],
    ["--device", "cuda:99"], ["--device", "meta"], ["--backend", "nonsense"], ["--max-new-tokens", "-1"],
    ["--max-new-tokens", "0"], ["--max-new-tokens", "100000"], ["--temperature", "-1"], ["--temperature", "nan"],
    ["--temperature", "inf"], ["--top-p", "2"], ["--top-p", "0"], ["--top-p", "nan"], ["--top-k", "-1"],
    ["--suffix", "x"], ["--image", "/nonexistent.png"], ["--image", "/dev/zero"],
]
CLI_GENERATE_GOOD = [[], ["--dtype", "bfloat16"], ["--dtype", "float32"], ["--backend", "eager"],
                     ["--temperature", "0.7", "--top-k", "5", "--top-p", "0.9", "--seed", "3"], ["--top-p", "1"]]


def png_with_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR then claims width x height (CRC fixed): a decompression bomb."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "PNG")
    raw = bytearray(buf.getvalue())
    ihdr = raw.index(b"IHDR")
    raw[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    raw[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(raw[ihdr:ihdr + 17])) & 0xFFFFFFFF)
    return bytes(raw)


BAD_IMAGE_OBJECTS: dict[str, Any] = {
    "None": None, "an int": 5, "a dict": {"url": "x"}, "empty bytes": b"",
    "random bytes": b"\x89PNG\r\n\x1a\n" + b"x" * 50,
    "a float array": np.zeros((8, 8, 3), np.float32), "an array with NaN": np.full((8, 8, 3), np.nan, np.float32),
    "a 5-channel array": np.zeros((8, 8, 5), np.uint8), "an empty array": np.zeros((0, 0, 3), np.uint8),
    "a 1-d array": np.zeros(10, np.uint8), "a 4-d array": np.zeros((1, 8, 8, 3), np.uint8),
    "a tensor not a multiple of the patch": torch.zeros(3, 7, 7), "a 2-d tensor": torch.zeros(8, 8),
    "a tensor with NaN": torch.full((3, 8, 8), float("nan")), "an empty tensor": torch.zeros(3, 0, 8),
    "bomb bytes": png_with_size(100000, 100000),
}


def write_image_files(root: Path) -> dict[str, Any]:
    """A valid PNG (`good`) and hostile image files (`bad`: name -> path)."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    good = root / "good.png"
    Image.fromarray(rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)).save(good)
    raw = good.read_bytes()
    files: dict[str, Path] = {
        "a missing file": root / "missing.png", "a folder": root, "/dev/zero": Path("/dev/zero"),
        "/dev/null": Path("/dev/null"), "/proc/self/environ": Path("/proc/self/environ"),
    }
    for name, data in {"empty.png": b"", "random.png": rng.bytes(500), "truncated.png": raw[: len(raw) // 2],
                       "text.png": b"not an image\n" * 10, "bomb.png": png_with_size(100000, 100000),
                       "wide.png": png_with_size(2**31 - 1, 1), "zero.png": png_with_size(0, 0)}.items():
        (root / name).write_bytes(data)
        files[f"file {name}"] = root / name
    fifo = root / "fifo.png"
    if not fifo.exists():
        os.mkfifo(fifo)
    files["a FIFO"] = fifo
    return {"good": good, "bad": files}
