"""Tekken (Mistral NeMo, Pixtral): a tiktoken-style byte-level BPE read from ``tekken.json``,
with ids identical to mistral-common's ``Tekkenizer``.

The file lists byte strings by rank (ranks 0-255 are the single bytes, in byte order); there
are no merges. tiktoken's rule is "repeatedly join the adjacent pair whose concatenation has
the lowest rank", which a ``tokenizers`` BPE reproduces when its merges are *every* split of
every token into two tokens, ordered by the rank of the result, and when a pre-token that is
itself a token is emitted whole (``ignore_merges``, as tiktoken does).

Ids: the first ``default_num_special_tokens`` ids (1000 for Pixtral) are control tokens; rank
``r`` is id ``r + 1000``. Files of version <= v7 without a ``special_tokens`` list use the
historical order (``<unk>``, ``<s>``, ``</s>``, ``[INST]``, ... ``[IMG]`` = 10, ``[IMG_BREAK]`` =
12, ``[IMG_END]`` = 13); unnamed slots are ``<SPECIAL_i>``. Only the first
``default_vocab_size - num_special`` ranks are used. Control tokens are only ever produced by
``bos``/``eos`` or the chat layout: "[INST]" in text is text.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Sequence
from itertools import groupby
from pathlib import Path
from typing import Any

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

from .base import TokenizerBase
from .errors import TokenizerError

#: Control tokens of tekken files that predate the ``special_tokens`` list (version <= v7).
LEGACY_SPECIALS = ("<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                   "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]",
                   "[IMG_END]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]",
                   "[TOOL_CONTENT]")
FILLER = "<SPECIAL_{}>"
VERSIONS = ("v1", "v2", "v3", "v7", "v11", "v13", "v15")


def _version_number(version: str) -> int:
    return int(version[1:])


def byte_symbols() -> list[str]:
    """GPT-2's byte -> printable character map (the alphabet of the ByteLevel pre-tokenizer)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


_SYMBOLS = byte_symbols()


def _as_symbols(token: bytes) -> str:
    return "".join(_SYMBOLS[b] for b in token)


def build_bpe(ranks: Sequence[bytes], pattern: str, offset: int) -> Tokenizer:
    """A ``tokenizers.Tokenizer`` giving tiktoken's ids for `ranks` (rank ``i`` -> id ``i + offset``)."""
    rank_of = {t: i for i, t in enumerate(ranks)}
    vocab = {_as_symbols(t): i + offset for i, t in enumerate(ranks)}
    merges: list[tuple[str, str]] = []
    for token in ranks:  # rank order, so a merge's priority is the rank of what it makes
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in rank_of and right in rank_of:
                merges.append((_as_symbols(left), _as_symbols(right)))
    tok = Tokenizer(models.BPE(vocab, merges, ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok


class TekkenTokenizer(TokenizerBase):
    """A Tekken tokenizer with the interface of ``BPETokenizer`` / ``SentencePieceTokenizer``."""

    FILE = "tekken.json"

    def __init__(self, data: dict[str, Any], source: str = "<memory>") -> None:
        self.source = source
        self._data = data
        try:
            config = data["config"]
            pattern = config["pattern"]
            self.version = str(config.get("version") or "v3")
            self.num_special_tokens = int(config["default_num_special_tokens"])
            self._vocab_size = int(config["default_vocab_size"])
            entries = data["vocab"]
        except (KeyError, TypeError, ValueError) as e:
            raise TokenizerError(f"{source}: not a tekken.json (missing or bad {e})") from None
        if self.version not in VERSIONS:
            raise TokenizerError(f"{source}: unknown tekken version {self.version!r} (known: {', '.join(VERSIONS)})")
        n_ranks = self._vocab_size - self.num_special_tokens
        if not 256 <= n_ranks <= len(entries):
            raise TokenizerError(f"{source}: default_vocab_size {self._vocab_size} - {self.num_special_tokens} "
                                 f"specials needs {n_ranks} ranks; the file has {len(entries)} (at least 256)")
        self._ranks = [self._token_bytes(entries[i], i) for i in range(n_ranks)]
        if len(set(self._ranks)) != n_ranks:
            raise TokenizerError(f"{source}: the vocabulary repeats a byte string")
        self.specials = self._special_names(data.get("special_tokens"))
        self._special_ids = {name: i for i, name in enumerate(self.specials)}
        self.image_config: dict[str, int] | None = data.get("image") or data.get("multimodal") or None
        self._tok = build_bpe(self._ranks, pattern, self.num_special_tokens)
        self._bos, self._eos, self._pad, self._unk = (self._special_ids.get(t, -1)
                                                      for t in ("<s>", "</s>", "<pad>", "<unk>"))

    def _token_bytes(self, entry: Any, i: int) -> bytes:
        try:
            if entry["rank"] != i:
                raise TokenizerError(f"{self.source}: vocab[{i}] has rank {entry['rank']}; ranks must be 0, 1, 2, ...")
            token = base64.b64decode(entry["token_bytes"], validate=True)
        except (KeyError, TypeError, binascii.Error) as e:
            raise TokenizerError(f"{self.source}: vocab[{i}] is not a {{rank, token_bytes}} entry ({e})") from None
        if i < 256 and token != bytes([i]):
            raise TokenizerError(f"{self.source}: rank {i} must be the single byte {i}, got {token!r}")
        if not token:
            raise TokenizerError(f"{self.source}: vocab[{i}] is empty")
        return token

    def _special_names(self, listed: Any) -> list[str]:
        n = self.num_special_tokens
        if listed is None:
            if _version_number(self.version) > 7:
                raise TokenizerError(f"{self.source}: a {self.version} tekken.json must list its special_tokens")
            names = list(LEGACY_SPECIALS[:n])
        else:
            try:
                ordered = sorted(listed, key=lambda t: t["rank"])
                names = [str(t["token_str"]) for t in ordered]
                ranks = [int(t["rank"]) for t in ordered]
            except (KeyError, TypeError, ValueError) as e:
                raise TokenizerError(f"{self.source}: bad special_tokens entry ({e})") from None
            if ranks != list(range(len(ranks))):
                raise TokenizerError(f"{self.source}: special token ranks must be 0, 1, 2, ...")
        if len(set(names)) != len(names) or len(names) > n:
            raise TokenizerError(f"{self.source}: {len(names)} special tokens (unique, at most {n} expected)")
        names += [FILLER.format(i) for i in range(len(names), n)]
        if len(set(names)) != n:
            raise TokenizerError(f"{self.source}: a special token clashes with a {FILLER} filler name")
        return names

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TekkenTokenizer:
        """Load ``tekken.json`` (or a folder holding one)."""
        p = Path(path)
        if p.is_dir():
            p = p / cls.FILE
        if not p.is_file():
            raise TokenizerError(f"{p}: no such tokenizer file")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TokenizerError(f"{p}: not a valid tekken.json ({e})") from None
        if not isinstance(data, dict):
            raise TokenizerError(f"{p}: not a valid tekken.json (top level is not an object)")
        return cls(data, os.fspath(p))

    # --- vocabulary -------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def unk_id(self) -> int:
        return self._unk

    def special_id(self, name: str) -> int:
        """Id of a control token such as ``"[INST]"`` (``TokenizerError`` if the file has none)."""
        try:
            return self._special_ids[name]
        except KeyError:
            raise TokenizerError(f"{self.source}: no special token {name!r}") from None

    def is_special(self, token_id: int) -> bool:
        return 0 <= token_id < self.num_special_tokens

    def id_to_bytes(self, token_id: int) -> bytes:
        """The bytes of a regular token; a control token's name, UTF-8 encoded."""
        self._check(token_id)
        if token_id < self.num_special_tokens:
            return self.specials[token_id].encode()
        return self._ranks[token_id - self.num_special_tokens]

    def id_to_piece(self, token_id: int) -> str:
        return self.id_to_bytes(token_id).decode("utf-8", errors="replace")

    def _check(self, token_id: int) -> None:
        if not 0 <= token_id < self._vocab_size:
            raise IndexError(f"token id {token_id} out of range [0, {self._vocab_size})")

    # --- encode / decode --------------------------------------------------------------------
    def encode(self, text: str, bos: bool = True, eos: bool = False) -> list[int]:
        try:
            ids = list(self._tok.encode(text, add_special_tokens=False).ids)
        except Exception as e:  # lone surrogates have no UTF-8 form
            raise TokenizerError(f"cannot encode {text[:40]!r}: {e} (lone surrogates are not text)") from None
        return self._wrap(ids, bos, eos)

    def encode_batch(self, texts: Sequence[str], bos: bool = True, eos: bool = False) -> list[list[int]]:
        """Batched ``encode`` (parallel in the Rust backend)."""
        try:
            encs = self._tok.encode_batch(list(texts), add_special_tokens=False)
        except Exception as e:
            raise TokenizerError(f"cannot encode batch: {e} (lone surrogates are not text)") from None
        return [self._wrap(list(e.ids), bos, eos) for e in encs]

    def decode(self, ids: Sequence[int], keep_special: bool = False) -> str:
        """Text for `ids`. Control tokens are dropped (or written by name with `keep_special`);
        each run of regular tokens between them is decoded on its own, invalid UTF-8 as U+FFFD,
        as mistral-common does."""
        n = self.num_special_tokens
        out: list[str] = []
        checked = [int(i) for i in ids]
        for i in checked:
            self._check(i)
        for special, run in groupby(checked, lambda i: i < n):
            if special:
                if keep_special:
                    out.extend(self.specials[i] for i in run)
            else:
                out.append(b"".join(self._ranks[i - n] for i in run).decode("utf-8", errors="replace"))
        return "".join(out)

    # --- persistence ------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``tekken.json`` into `directory` (the data it was read from, atomically); returns its path.
        (``tokenizer`` is the ``tokenizers.Tokenizer`` of the regular tokens, ids already offset.)"""
        text = json.dumps(self._data, ensure_ascii=False)
        return self._save_atomic(directory, self.FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, TekkenTokenizer) and self._ranks == other._ranks
                and self.specials == other.specials and self._data["config"] == other._data["config"])

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"TekkenTokenizer(source={self.source!r}, vocab_size={self.vocab_size}, "
                f"num_special_tokens={self.num_special_tokens})")
