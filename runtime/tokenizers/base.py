"""What the zoo's tokenizers share: BOS/EOS wrapping, batch decoding, the underlying
`tokenizers.Tokenizer`, and atomic saves (a crash mid-save never leaves a half-written file)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from tokenizers import Tokenizer


class TokenizerBase:
    _tok: Tokenizer
    _bos: int = -1
    _eos: int = -1
    _pad: int = -1

    @property
    def vocab_size(self) -> int:  # pragma: no cover - every tokenizer defines it
        raise NotImplementedError

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def bos_id(self) -> int:
        return self._bos

    @property
    def eos_id(self) -> int:
        return self._eos

    @property
    def pad_id(self) -> int:
        return self._pad

    def _wrap(self, ids: list[int], bos: bool, eos: bool) -> list[int]:
        if bos and self.bos_id >= 0:
            ids.insert(0, self.bos_id)
        if eos and self.eos_id >= 0:
            ids.append(self.eos_id)
        return ids

    def decode(self, ids: Sequence[int]) -> str:  # pragma: no cover - every tokenizer defines it
        raise NotImplementedError

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> list[str]:
        return [self.decode(ids) for ids in batch]

    @property
    def tokenizer(self) -> Tokenizer:
        """The underlying ``tokenizers.Tokenizer``."""
        return self._tok

    @staticmethod
    def _save_atomic(directory: str | os.PathLike[str], name: str, write: Callable[[Path], None]) -> Path:
        """Call `write(tmp_path)` and move the result to `directory/name` in one rename."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out)
        os.close(fd)
        try:
            write(Path(tmp))
            os.replace(tmp, out / name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return out / name

    __hash__ = None  # type: ignore[assignment]
