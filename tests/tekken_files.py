"""Small Tekken files for tests: a byte-level BPE trained here with ``tokenizers`` and written
in mistral-common's ``tekken.json`` layout, so the oracle (mistral-common) and the runtime read
the same file."""

from __future__ import annotations

import base64
import json
import sysconfig
from pathlib import Path
from typing import Any

from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

from zoo.runtime.tokenizers.tekken import byte_symbols

#: The pre-tokenization regex of Mistral's Tekken files (NeMo, Pixtral).
PATTERN = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
           r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|"
           r"\p{N}|"
           r" ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
STDLIB = Path(sysconfig.get_paths()["stdlib"])
EXTRA = ["naïve café — 日本語のテキスト、中文文本 🙂🚀 Ωμέγα Привет мир 안녕하세요 ", "The quick brown fox. " * 20]


def trained_ranks(n_merges: int = 700) -> list[bytes]:
    """256 single bytes (rank = byte), then BPE merges in the order training found them."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=256 + n_merges, initial_alphabet=alphabet, show_progress=False)
    corpus = [f.read_text(encoding="utf-8") for f in sorted(STDLIB.glob("*.py"))[:4]] + EXTRA * 5
    tok.train_from_iterator(corpus, trainer)
    byte_of = {c: b for b, c in _symbol_table().items()}
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    merged = [bytes(byte_of[c] for c in piece) for piece, _ in vocab if len(piece) > 1]
    return [bytes([b]) for b in range(256)] + merged


def _symbol_table() -> dict[int, str]:
    return dict(enumerate(byte_symbols()))


def write_tekken(path: Path, ranks: list[bytes], *, version: str = "v3", num_special: int = 1000,
                 special_tokens: list[str] | None = None, image: dict[str, int] | None = None,
                 drop_ranks: int = 0) -> Path:
    """Write ``tekken.json``; `drop_ranks` leaves that many listed ranks beyond default_vocab_size."""
    data: dict[str, Any] = {
        "config": {"pattern": PATTERN, "num_vocab_tokens": len(ranks),
                   "default_vocab_size": len(ranks) - drop_ranks + num_special,
                   "default_num_special_tokens": num_special, "version": version},
        "vocab": [{"rank": i, "token_bytes": base64.b64encode(t).decode(), "token_str": _maybe_str(t)}
                  for i, t in enumerate(ranks)],
    }
    if special_tokens is not None:
        data["special_tokens"] = [{"rank": i, "token_str": s, "is_control": True} for i, s in enumerate(special_tokens)]
    if image is not None:
        data["image"] = image
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _maybe_str(t: bytes) -> str | None:
    try:
        return t.decode("utf-8")
    except UnicodeDecodeError:
        return None


__all__ = ["PATTERN", "STDLIB", "trained_ranks", "write_tekken"]
