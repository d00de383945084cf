"""Train a byte-level BPE tokenizer on a corpus folder with one of the pre-tokenization regexes
Dagan et al. (2024) compare (`zoo tokenizer train`).

The regex cuts text into pre-tokens before BPE merges anything, so it bounds which tokens can
exist at all. The three choices (docs/tokenizers.md):

- ``gpt4``: GPT-4's cl100k_base pattern, which Llama 3 also uses: English contractions, a word
  with at most one leading space or punctuation mark, digits in groups of up to three, a
  punctuation run (with the line breaks after it), line breaks with the spaces before them,
  and runs of spaces that leave one for the next word.
- ``llama``: a Llama-2-style split. Llama 2's tokenizer is a SentencePiece BPE without a regex.
  Its trainer splits on whitespace (a space joins the *next* piece as ``▁``), puts each digit
  apart (``split_digits``) and keeps letters and punctuation in separate pieces
  (``split_by_unicode_script``). The pattern does the same inside a byte-level BPE: one
  leading space and then letters, one digit, or a punctuation run; line breaks alone; runs of
  spaces. It is an approximation. SentencePiece's byte fallback and dummy prefix are not
  reproduced; bench/tokenizer.py compares against a real SentencePiece trained the LLaMA way.
- ``code``: zoo's code pattern (zoo.runtime.tokenizers.bpe.CODE_PATTERN), the one tiny-code's
  tokenizer uses. A line break together with the next line's indentation is one pre-token,
  there are no contraction rules, and digits go in groups of three.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from ..runtime.errors import UsageError
from ..runtime.tokenizers.bpe import (
    CODE_PATTERN,
    GPT4_PATTERN,
    SPECIALS,
    BPETokenizer,
    train_code_tokenizer,
)

LLAMA2_PATTERN = "|".join([
    r" ?\p{L}+",  # a word, the space before it attached (SentencePiece's ▁word)
    r" ?\p{N}",  # one digit: split_digits
    r" ?[^\s\p{L}\p{N}]+",  # punctuation (another unicode script than letters)
    r"[\r\n]",  # each line break alone
    r"[^\S\r\n]+(?!\S)",  # spaces leaving one for the next piece
    r"[^\S\r\n]+",
])

REGEXES = {"gpt4": GPT4_PATTERN, "llama": LLAMA2_PATTERN, "code": CODE_PATTERN}


def corpus_files(root: str | os.PathLike[str], suffixes: Sequence[str] = (".py",)) -> list[Path]:
    """The files under `root` (or `root` itself) with one of `suffixes`, sorted; hidden folders
    and __pycache__ skipped."""
    p = Path(root)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise UsageError(f"{p}: no such file or folder")
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in suffixes and not any(
        part.startswith(".") or part == "__pycache__" for part in f.relative_to(p).parts[:-1]))
    if not files:
        raise UsageError(f"{p}: no {'/'.join(suffixes)} files in it")
    return files


def train_tokenizer(files: Iterable[str | os.PathLike[str]], vocab_size: int, regex: str = "code", *,
                    out: str | os.PathLike[str] | None = None, specials: Sequence[str] = (),
                    min_frequency: int = 2) -> BPETokenizer:
    """A byte-level BPE of `vocab_size` tokens (the 3 specials <s> </s> <pad> and 256 bytes
    included; each extra special in `specials` adds one more at the end) with the named
    pre-tokenization `regex` (REGEXES). `out`: a .json file or a folder to write it into
    (atomically)."""
    if regex not in REGEXES:
        raise UsageError(f"unknown regex {regex!r}; choose one of {', '.join(REGEXES)}")
    extra = [s for s in specials if s not in SPECIALS]
    tok = train_code_tokenizer(list(files), vocab_size=vocab_size, pattern=REGEXES[regex], min_frequency=min_frequency)
    if extra:
        tok.tokenizer.add_special_tokens(extra)
        tok = BPETokenizer(tok.tokenizer, "<trained>")
    if out is not None:
        tok.source = os.fspath(save_tokenizer(tok, out))
    return tok


def save_tokenizer(tok: BPETokenizer, out: str | os.PathLike[str]) -> Path:
    """`out` ending in .json: that file; else the folder to hold tokenizer.json."""
    p = Path(out)
    if p.suffix == ".json":
        return tok._save_atomic(p.parent, p.name, lambda tmp: tok.tokenizer.save(os.fspath(tmp)))
    return tok.save(p)
