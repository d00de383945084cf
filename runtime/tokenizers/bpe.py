"""Byte-level BPE for code (Dagan et al. 2024, "Getting the most out of your tokenizer for
pre-training and domain adaptation"), on a ``tokenizers.Tokenizer`` stored as ``tokenizer.json``.

Why this shape, following the paper's recommendations:

- byte-level BPE: every string has bytes, so any text round-trips exactly and no id is ever
  "unknown" (no byte fallback or normalization to reproduce);
- a GPT-4-style pre-tokenization regex, adapted to code (``CODE_PATTERN``): a newline plus the
  next line's indentation is one pre-token (so ``"\\n        "`` becomes one token), digits go in
  groups of at most three, punctuation runs stay apart from words and from newlines, and no
  English-contraction rule (it cuts ``f'spam'`` into ``f``, ``'s``, ``pam``);
- a vocabulary sized for the model: small models cannot afford a 32k-row embedding and output
  matrix (see docs/tokenizer.md for the measured trade-off behind the 4096 default).

Specials come first: ``<s>`` = 0, ``</s>`` = 1, ``<pad>`` = 2. They are only ever produced by
``bos``/``eos`` (text that happens to contain ``"<s>"`` is encoded as plain bytes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from .base import TokenizerBase
from .errors import TokenizerError

SPECIALS = ("<s>", "</s>", "<pad>")
DEFAULT_VOCAB_SIZE = 4096

#: Alternatives are tried left to right at each position.
CODE_PATTERN = "|".join([
    r"\s*[\r\n][^\S\r\n]*",  # trailing spaces, line break(s), then the next line's indentation
    r"[^\r\n\p{L}\p{N}]?\p{L}+",  # a word with at most one leading space/punctuation: " def", ".append"
    r"\p{N}{1,3}",  # digits, in groups of 1-3 (numbers get a small, regular vocabulary)
    r" ?[^\s\p{L}\p{N}]+",  # a punctuation run with at most one leading space: " +=", "):", "()"
    r"\s+(?!\S)",  # spaces inside a line (alignment), leaving one for the next word
    r"\s+",
])


#: GPT-4's (cl100k) pattern, for comparison (bench/tokenizer.py).
GPT4_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def _byte_level_pre_tokenizer(pattern: str) -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


class BPETokenizer(TokenizerBase):
    """A byte-level BPE tokenizer with the interface of ``SentencePieceTokenizer``.

    ``bos_id`` / ``eos_id`` / ``pad_id`` are -1 when the vocabulary lacks that token."""

    FILE = "tokenizer.json"

    def __init__(self, tok: Tokenizer, source: str = "<memory>", *, bos: str = SPECIALS[0], eos: str = SPECIALS[1],
                 pad: str = SPECIALS[2]) -> None:
        self.source = source
        self._tok = tok
        state = json.loads(tok.to_str())
        if (state.get("model") or {}).get("type") != "BPE" or (state.get("decoder") or {}).get("type") != "ByteLevel":
            raise TokenizerError(f"{source}: not a byte-level BPE tokenizer (model "
                                 f"{(state.get('model') or {}).get('type')}, decoder "
                                 f"{(state.get('decoder') or {}).get('type')})")
        vocab = tok.get_vocab(with_added_tokens=True)
        missing = [c for c in pre_tokenizers.ByteLevel.alphabet() if c not in vocab]
        if missing:
            raise TokenizerError(f"{source}: {len(missing)} of the 256 byte symbols are missing from the "
                                 f"vocabulary, so some text could not be encoded")
        tok.encode_special_tokens = True  # "<s>" in the text is text, not a control token
        self._bos, self._eos, self._pad = (vocab.get(t, -1) for t in (bos, eos, pad))
        self._special = frozenset(i for i in (self._bos, self._eos, self._pad) if i >= 0)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> BPETokenizer:
        """Load ``tokenizer.json`` (or a folder holding one)."""
        p = Path(path)
        if p.is_dir():
            p = p / cls.FILE
        if not p.is_file():
            raise TokenizerError(f"{p}: no such tokenizer file")
        try:
            tok = Tokenizer.from_file(os.fspath(p))
        except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
            raise TokenizerError(f"{p}: not a valid tokenizer.json ({e})") from None
        return cls(tok, os.fspath(p))

    # --- vocabulary -------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def unk_id(self) -> int:
        return -1  # byte-level: nothing is unknown

    def id_to_piece(self, token_id: int) -> str:
        piece = self._tok.id_to_token(token_id)
        if piece is None:
            raise IndexError(f"token id {token_id} out of range [0, {self.vocab_size})")
        return piece

    def piece_to_id(self, piece: str) -> int:
        i = self._tok.token_to_id(piece)
        return -1 if i is None else i

    # --- encode / decode --------------------------------------------------------------------
    def encode(self, text: str, bos: bool = True, eos: bool = False) -> list[int]:
        try:
            ids = list(self._tok.encode(text, add_special_tokens=False).ids)
        except Exception as e:  # a str with lone surrogates has no UTF-8 form (tokenizers: TypeError or
            # a Rust-side error, depending on the version)
            raise TokenizerError(f"cannot encode {text[:40]!r}: {e} (lone surrogates are not text)") from None
        return self._wrap(ids, bos, eos)

    def encode_batch(self, texts: Sequence[str], bos: bool = True, eos: bool = False) -> list[list[int]]:
        """Batched ``encode`` (parallel in the Rust backend)."""
        encs = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [self._wrap(list(e.ids), bos, eos) for e in encs]

    def decode(self, ids: Sequence[int]) -> str:
        """Text for ``ids``; specials are invisible. ``decode(encode(t)) == t`` for every str ``t``;
        generated ids that cut a UTF-8 sequence decode its bytes as U+FFFD."""
        n = self.vocab_size
        keep = []
        for raw in ids:
            i = int(raw)
            if not 0 <= i < n:
                raise IndexError(f"token id {i} out of range [0, {n})")
            if i not in self._special:
                keep.append(i)
        return self._tok.decode(keep, skip_special_tokens=False)

    # --- persistence ------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``tokenizer.json`` into ``directory`` (atomically); returns its path."""
        return self._save_atomic(directory, self.FILE, lambda tmp: self._tok.save(os.fspath(tmp)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BPETokenizer) and self._tok.to_str() == other._tok.to_str()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"BPETokenizer(source={self.source!r}, vocab_size={self.vocab_size})"


def _read_texts(files: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Whole files (not lines: the indentation pre-token spans the line break). Undecodable
    bytes become U+FFFD: a stray Latin-1 byte must not abort training on a code corpus."""
    out = []
    for f in files:
        try:
            out.append(Path(f).read_text(encoding="utf-8", errors="replace"))
        except OSError as e:
            raise TokenizerError(f"{f}: cannot read training file ({e})") from None
    return out


def train_code_tokenizer(files: Iterable[str | os.PathLike[str]], vocab_size: int = DEFAULT_VOCAB_SIZE,
                         out: str | os.PathLike[str] | None = None, *, texts: Iterable[str] = (),
                         min_frequency: int = 2, pattern: str = CODE_PATTERN) -> BPETokenizer:
    """Train the code tokenizer on `files` (and extra in-memory `texts`); write
    ``out/tokenizer.json`` when `out` is given. `vocab_size` counts the 3 specials and the 256
    bytes, so it must be at least 259. `pattern` replaces the pre-tokenization regex (for
    experiments; the default is the one the tests and docs describe)."""
    if vocab_size < len(SPECIALS) + 256:
        raise TokenizerError(f"vocab_size {vocab_size} < {len(SPECIALS) + 256} (3 specials + 256 bytes)")
    corpus = _read_texts(files) + list(texts)
    if not corpus:
        raise TokenizerError("train_code_tokenizer: no training text")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = _byte_level_pre_tokenizer(pattern)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer, length=len(corpus))
    tok.post_processor = processors.TemplateProcessing(single=f"{SPECIALS[0]} $A", pair=f"{SPECIALS[0]} $A $B",
                                                       special_tokens=[(SPECIALS[0], 0)])
    result = BPETokenizer(tok, "<trained>")
    if out is not None:
        result.source = os.fspath(result.save(out))
    return result
