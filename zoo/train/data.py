"""Token streams for training: batches of windows cut from one long 1-D array of token ids.

A batch is a pure function of (seed, batch index), never of a generator's hidden state, so the
whole data position of a run is one integer: resuming needs only `position`, and a run resumed
at step K reads exactly the batches an uninterrupted run would. Files are memory-mapped, so a
corpus larger than RAM costs only the windows actually read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..compiler.errors import ZooError

MODES = ("random", "sequential")
_DTYPES = {"uint16": np.uint16, "int32": np.int32, "uint32": np.uint32, "int64": np.int64}


class DataError(ZooError, ValueError):
    """A token file or array is unusable: wrong shape or dtype, too short, or not the stream a
    checkpoint was trained on."""


def _as_array(tokens: Any) -> np.ndarray | torch.Tensor:
    if isinstance(tokens, torch.Tensor):
        if tokens.dim() != 1 or tokens.is_floating_point():
            raise DataError(f"tokens: expected a 1-D integer tensor, got {tuple(tokens.shape)} {tokens.dtype}")
        return tokens.cpu()
    arr = np.asarray(tokens)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"tokens: expected a 1-D integer array, got shape {arr.shape} dtype {arr.dtype}")
    return arr


def load_tokens(path: str | Path, dtype: str = "uint16") -> np.ndarray:
    """Memory-map a token file: `.npy` (its own dtype) or raw little-endian ids (`dtype`:
    uint16 as written by nanoGPT-style preprocessors, or int32/uint32/int64)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such token file")
    if path.suffix == ".npy":
        try:
            return _as_array(np.load(path, mmap_mode="r"))  # type: ignore[return-value]
        except ValueError as e:
            raise DataError(f"{path}: not a readable .npy array ({e})") from None
    if dtype not in _DTYPES:
        raise DataError(f"--dtype {dtype!r}: use one of {', '.join(_DTYPES)}")
    itemsize = np.dtype(_DTYPES[dtype]).itemsize
    if path.stat().st_size % itemsize:
        raise DataError(f"{path}: {path.stat().st_size} bytes is not a whole number of {dtype} ids")
    return np.memmap(path, dtype=np.dtype(_DTYPES[dtype]).newbyteorder("<"), mode="r")


def _mix(*values: int) -> int:
    """A 63-bit seed from integers: each batch gets its own generator, independent of the others."""
    digest = hashlib.blake2b(b",".join(str(v).encode() for v in values), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@dataclass(frozen=True)
class StreamInfo:
    """What a checkpoint records about its stream, to refuse resuming on different data."""

    n_tokens: int
    seq_len: int
    batch_size: int
    mode: str
    seed: int


class TokenStream:
    """Batches (batch_size, seq_len + 1) of int64 ids from a 1-D token array.

    Each row is a window of seq_len + 1 tokens: a model's `loss(window)` predicts seq_len
    next tokens from it (multi-token heads: the last i + 1 positions of head i have no target).
    `mode="random"`: window starts drawn uniformly, seeded per batch. `mode="sequential"`:
    consecutive windows overlapping by one token, so every token is a target once per epoch,
    wrapping around at the end (what evaluation and curriculum-ordered data want).
    """

    def __init__(self, tokens: Any, seq_len: int, batch_size: int, *, mode: str = "random", seed: int = 0,
                 source: str | None = None) -> None:
        if mode not in MODES:
            raise DataError(f"mode {mode!r}: use one of {', '.join(MODES)}")
        if seq_len < 1 or batch_size < 1:
            raise DataError(f"seq_len and batch_size must be positive, got {seq_len} and {batch_size}")
        self.tokens = _as_array(tokens)
        self.seq_len, self.batch_size, self.mode, self.seed = seq_len, batch_size, mode, seed
        self.source = source
        self.position = 0  # batches drawn so far: the whole data state of a run
        if len(self.tokens) < seq_len + 1:
            raise DataError(f"{source or 'tokens'}: {len(self.tokens)} tokens, need at least seq_len + 1 = "
                            f"{seq_len + 1} for one window")

    @classmethod
    def from_file(cls, path: str | Path, seq_len: int, batch_size: int, *, dtype: str = "uint16",
                  **kw: Any) -> TokenStream:
        return cls(load_tokens(path, dtype), seq_len, batch_size, source=str(path), **kw)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def window(self) -> int:
        return self.seq_len + 1

    @property
    def batches_per_epoch(self) -> int:
        """Sequential batches that cover the stream once."""
        return max(1, -(-self._n_starts() // (self.seq_len * self.batch_size)))

    def _n_starts(self) -> int:
        return len(self.tokens) - self.window + 1

    def starts(self, index: int) -> list[int]:
        """Window start offsets of batch `index` (a pure function of seed and index)."""
        n = self._n_starts()
        if self.mode == "random":
            gen = torch.Generator().manual_seed(_mix(self.seed, index))
            return torch.randint(0, n, (self.batch_size,), generator=gen).tolist()
        first = index * self.batch_size
        return [((first + r) * self.seq_len) % n for r in range(self.batch_size)]

    def batch(self, index: int) -> torch.Tensor:
        rows = [self.tokens[s: s + self.window] for s in self.starts(index)]
        if isinstance(self.tokens, torch.Tensor):
            return torch.stack(rows).long()
        return torch.from_numpy(np.stack(rows).astype(np.int64))

    def next_batch(self) -> torch.Tensor:
        out = self.batch(self.position)
        self.position += 1
        return out

    def split(self, holdout: float) -> tuple[TokenStream, TokenStream]:
        """(train, held-out): the last `holdout` fraction of the tokens, cut at one position so no
        window crosses it; the held-out stream reads sequentially (a fixed evaluation set)."""
        if not 0.0 < holdout < 1.0:
            raise DataError(f"holdout fraction must be in (0, 1), got {holdout}")
        cut = int(len(self.tokens) * (1.0 - holdout))
        if cut < self.window or len(self.tokens) - cut < self.window:
            raise DataError(f"{len(self.tokens)} tokens cannot hold a {holdout:.1%} split with windows of "
                            f"{self.window}")
        src = self.source or "tokens"
        train = TokenStream(self.tokens[:cut], self.seq_len, self.batch_size, mode=self.mode, seed=self.seed,
                            source=f"{src}[:{cut}]")
        held = TokenStream(self.tokens[cut:], self.seq_len, self.batch_size, mode="sequential", seed=self.seed,
                           source=f"{src}[{cut}:]")
        return train, held

    # ---------------------------------------------------------------- resume
    def info(self) -> StreamInfo:
        return StreamInfo(len(self.tokens), self.seq_len, self.batch_size, self.mode, self.seed)

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position, **self.info().__dict__}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the position; refuse a stream whose length or batch geometry differs, since
        its batches would not be the ones the checkpoint was about to read."""
        saved = StreamInfo(**{k: state[k] for k in StreamInfo.__dataclass_fields__})
        if saved != self.info():
            raise DataError(f"{self.source or 'tokens'}: this stream is {self.info()}, the checkpoint was "
                            f"trained on {saved}; pass the same data and settings to resume")
        self.position = int(state["position"])
