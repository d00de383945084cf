"""SentencePiece BPE (LLaMA / Code Llama style) on top of the ``tokenizers`` library.

Why rebuild instead of calling ``sentencepiece``: the runtime depends only on ``tokenizers``
(fast, batched, thread-friendly). A SentencePiece BPE model carries no merge list, so the
merges are derived from the vocabulary and ranked so that ``tokenizers``' BPE makes the same
choices as sentencepiece's ``bpe_model.cc``:

* sentencepiece repeatedly merges the adjacent symbol pair whose concatenation is a
  NORMAL/UNUSED piece with the highest score (ties: leftmost). Every split ``a + b`` of such a
  piece, with ``a`` and ``b`` themselves mergeable pieces, becomes a merge, ranked by
  (score descending, piece id). ``tokenizers`` pops the lowest rank, then the leftmost.
* USER_DEFINED pieces are matched atomically (leftmost-longest) on the normalized text and
  never merged: they become ``normalized=True`` added tokens.
* CONTROL pieces (``<s>``, ``</s>``) are never produced from text; they decode to "".
* Characters without a piece fall back to ``<0xNN>`` byte pieces (``byte_fallback``) or unk.
* Normalization: optional precompiled charsmap, optional whitespace cleanup, the dummy "▁"
  prefix (added to every non-empty input, even one that already starts with a space, which is
  why ``pre_tokenizers.Metaspace`` is not used), then " " -> "▁".

Known, principled divergences from sentencepiece (none occur for LLaMA/Code Llama vocabularies
on ordinary text; see tests/runtime/test_tokenizers.py):

* Two *different* pairs forming the same piece, competing for a shared symbol (e.g. "ab"+"a"
  vs "a"+"ba" -> "aba"), are ordered by rank instead of position.
* UNUSED pieces are produced as-is; sentencepiece re-splits them into their parts.
* An input that is *exactly* a user-defined piece (e.g. the literal string "▁<PRE>") gets no
  dummy prefix, because ``tokenizers`` normalizes added-token patterns with the same normalizer
  and the prefix must be suppressed for the pattern itself.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, processors

from .errors import TokenizerError
from .spm_proto import ModelProto, ModelType, PieceType, load_model_proto, parse_model_proto

SPACE = "\u2581"  # "▁", sentencepiece's whitespace symbol.
_MERGEABLE = (PieceType.NORMAL, PieceType.UNUSED)


def _regex_literal(s: str) -> str:
    """Escape every char as ``\\x{HHHH}`` so Oniguruma never sees a metacharacter."""
    return "".join(f"\\x{{{ord(c):X}}}" for c in s)


def _exact_alternatives(strings: Sequence[str]) -> str:
    """A regex matching exactly one of ``strings`` (longest first, for leftmost-longest)."""
    return "|".join(_regex_literal(s) for s in sorted(set(strings), key=len, reverse=True))


def _byte_value(piece: str) -> int:
    """``"<0x0A>"`` -> 10 (sentencepiece's BYTE piece spelling)."""
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        try:
            return int(piece[3:5], 16)
        except ValueError:
            pass
    raise TokenizerError(f"malformed byte piece {piece!r}")


def decode_utf8_bytes(data: bytes | bytearray) -> str:
    """UTF-8 decode where each structurally invalid byte becomes one U+FFFD.

    This is sentencepiece's rule; Python's ``errors="replace"`` instead folds a truncated
    multi-byte prefix into a single U+FFFD, which would change generated text.
    """
    out: list[str] = []
    pos, n = 0, len(data)
    while pos < n:
        lead = data[pos]
        size = 1 if lead < 0x80 else 2 if 0xC2 <= lead < 0xE0 else 3 if 0xE0 <= lead < 0xF0 else 4 if 0xF0 <= lead < 0xF5 else 0
        try:
            if not size:
                raise UnicodeDecodeError("utf-8", bytes(data), pos, pos + 1, "invalid lead byte")
            out.append(bytes(data[pos : pos + size]).decode("utf-8"))
            pos += size
        except UnicodeDecodeError:
            out.append("\ufffd")
            pos += 1
    return "".join(out)


def derive_merges(proto: ModelProto) -> list[tuple[str, str]]:
    """BPE merges reproducing sentencepiece's score-ordered pair merging (see module doc)."""
    mergeable = {p.piece for p in proto.pieces if p.type in _MERGEABLE}
    ranked: list[tuple[float, int, int, str, str]] = []
    for pid, p in enumerate(proto.pieces):
        if p.type not in _MERGEABLE:
            continue
        s = p.piece
        for k in range(1, len(s)):
            left, right = s[:k], s[k:]
            if left in mergeable and right in mergeable:
                ranked.append((-p.score, pid, k, left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def _whitespace_steps(proto: ModelProto, dummy_prefix: bool) -> list[normalizers.Normalizer]:
    """Charsmap + extra-whitespace removal, i.e. everything before the dummy prefix.

    Without the dummy prefix (infilling), leading spaces are not at the start of the sentence
    in sentencepiece's view (a sentinel precedes them), so they are collapsed, not stripped.
    """
    spec = proto.normalizer_spec
    steps: list[normalizers.Normalizer] = []
    if spec.precompiled_charsmap:
        steps.append(normalizers.Precompiled(spec.precompiled_charsmap))
    if spec.remove_extra_whitespaces:
        # sentencepiece strips trailing *escaped* spaces, so a literal "▁" there goes too.
        trailing = rf"[ {SPACE}]+\z" if spec.escape_whitespaces else r" +\z"
        edges = rf"\A +|{trailing}" if dummy_prefix else trailing
        steps += [normalizers.Replace(Regex(edges), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    return steps


def build_normalizer(proto: ModelProto, dummy_prefix: bool = True) -> normalizers.Normalizer:
    """The sentencepiece normalizer as a ``tokenizers`` normalizer chain."""
    spec = proto.normalizer_spec
    steps = _whitespace_steps(proto, dummy_prefix)
    space = SPACE if spec.escape_whitespaces else " "
    if dummy_prefix and spec.add_dummy_prefix:
        user = [p.piece for p in proto.pieces if p.type == PieceType.USER_DEFINED]
        if user:
            # ``tokenizers`` runs added-token patterns through this same normalizer; suppress
            # the prefix when the whole string is a user piece so "▁<PRE>" stays "▁<PRE>".
            pre = normalizers.Sequence(steps) if steps else None
            forms = [pre.normalize_str(u) if pre else u for u in user]
            steps.append(normalizers.Replace(Regex(rf"\A(?!(?:{_exact_alternatives(forms)})\z)"), space))
        else:
            steps.append(normalizers.Prepend(space))
    if spec.escape_whitespaces:
        steps.append(normalizers.Replace(" ", SPACE))
    return normalizers.Sequence(steps)


def build_decoder(proto: ModelProto) -> decoders.Decoder:
    """Control pieces -> "", unk -> unk_surface, "▁" -> " ", bytes -> UTF-8, drop dummy space."""
    steps: list[decoders.Decoder] = []
    control = [p.piece for p in proto.pieces if p.type == PieceType.CONTROL]
    if control:
        steps.append(decoders.Replace(Regex(rf"\A(?:{_exact_alternatives(control)})\z"), ""))
    unk = [p.piece for p in proto.pieces if p.type == PieceType.UNKNOWN]
    steps.append(decoders.Replace(Regex(rf"\A(?:{_exact_alternatives(unk)})\z"), proto.trainer_spec.unk_surface))
    steps += [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if proto.normalizer_spec.add_dummy_prefix:
        steps.append(decoders.Strip(" ", 1, 0))
    return decoders.Sequence(steps)


def _check_supported(proto: ModelProto, source: str) -> None:
    ts = proto.trainer_spec
    if ts.model_type != ModelType.BPE:
        raise TokenizerError(f"{source}: model_type {ts.model_type.name} is not supported (only BPE)")
    if ts.treat_whitespace_as_suffix:
        raise TokenizerError(f"{source}: treat_whitespace_as_suffix models are not supported")
    seen: set[str] = set()
    for p in proto.pieces:
        if p.piece in seen:
            raise TokenizerError(f"{source}: duplicate piece {p.piece!r}")
        seen.add(p.piece)
    if sum(p.type == PieceType.UNKNOWN for p in proto.pieces) != 1:
        raise TokenizerError(f"{source}: expected exactly one UNKNOWN piece")


def approximation_notes(proto: ModelProto) -> list[str]:
    """Model features this rebuild reproduces only approximately (empty for LLaMA/Code Llama)."""
    notes = []
    if any(p.type == PieceType.UNUSED for p in proto.pieces):
        notes.append("UNUSED pieces are emitted instead of being re-split into their parts")
    has_user = any(p.type == PieceType.USER_DEFINED for p in proto.pieces)
    if has_user and proto.normalizer_spec.precompiled_charsmap:
        notes.append("user-defined pieces are normalized by the charsmap (sentencepiece skips them)")
    return notes


def build_tokenizer(proto: ModelProto, source: str = "<proto>", dummy_prefix: bool = True) -> Tokenizer:
    """Build a standalone ``tokenizers.Tokenizer`` equivalent to the sentencepiece model."""
    _check_supported(proto, source)
    ts = proto.trainer_spec
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    unk = next(p.piece for p in proto.pieces if p.type == PieceType.UNKNOWN)
    model = models.BPE(
        vocab=vocab,
        merges=derive_merges(proto),
        unk_token=unk,
        fuse_unk=True,
        byte_fallback=ts.byte_fallback,
    )
    tok = Tokenizer(model)
    tok.normalizer = build_normalizer(proto, dummy_prefix)
    tok.decoder = build_decoder(proto)
    user = [p.piece for p in proto.pieces if p.type == PieceType.USER_DEFINED]
    if user:
        tok.add_tokens([AddedToken(u, normalized=True, special=False) for u in user])
    bos = proto.pieces[ts.bos_id].piece if 0 <= ts.bos_id < len(proto.pieces) else None
    if bos is not None:  # LLaMA convention for standalone users of the JSON: prepend BOS.
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos}:1 $B:1", special_tokens=[(bos, ts.bos_id)]
        )
    return tok


class SentencePieceTokenizer:
    """A sentencepiece BPE model (LLaMA, Code Llama) with sentencepiece-identical ids.

    ``bos_id`` / ``eos_id`` / ``pad_id`` follow sentencepiece: -1 when the model has none.
    """

    MODEL_FILE = "tokenizer.model"

    def __init__(self, proto: ModelProto, raw: bytes, source: str = "<bytes>") -> None:
        self.proto = proto
        self.source = source
        self._raw = bytes(raw)
        self._tok = build_tokenizer(proto, source)
        for note in approximation_notes(proto):
            warnings.warn(f"{source}: {note}; ids may differ from sentencepiece", stacklevel=3)
        self._tok_no_prefix: Tokenizer | None = None  # built lazily (infilling only)
        self._piece_ids = {p.piece: i for i, p in enumerate(proto.pieces)}
        self._control = frozenset(i for i, p in enumerate(proto.pieces) if p.type == PieceType.CONTROL)
        self._byte_of = [_byte_value(p.piece) if p.type == PieceType.BYTE else -1 for p in proto.pieces]

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> SentencePieceTokenizer:
        """Load a ``tokenizer.model`` (raises ``TokenizerError`` naming ``path`` if invalid)."""
        proto, raw = load_model_proto(path)
        return cls(proto, raw, os.fspath(path))

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<bytes>") -> SentencePieceTokenizer:
        return cls(parse_model_proto(data, source), data, source)

    # --- vocabulary -------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.proto.pieces)

    def __len__(self) -> int:
        return self.vocab_size

    def _special(self, value: int) -> int:
        return value if 0 <= value < self.vocab_size else -1

    @property
    def bos_id(self) -> int:
        return self._special(self.proto.trainer_spec.bos_id)

    @property
    def eos_id(self) -> int:
        return self._special(self.proto.trainer_spec.eos_id)

    @property
    def pad_id(self) -> int:
        return self._special(self.proto.trainer_spec.pad_id)

    @property
    def unk_id(self) -> int:
        return next(i for i, p in enumerate(self.proto.pieces) if p.type == PieceType.UNKNOWN)

    def id_to_piece(self, token_id: int) -> str:
        if not 0 <= token_id < self.vocab_size:
            raise IndexError(f"token id {token_id} out of range [0, {self.vocab_size})")
        return self.proto.pieces[token_id].piece

    def piece_to_id(self, piece: str) -> int:
        """Like sentencepiece: an unknown piece maps to ``unk_id`` (see ``has_piece``)."""
        return self._piece_ids.get(piece, self.unk_id)

    def has_piece(self, piece: str) -> bool:
        return piece in self._piece_ids

    def is_control(self, token_id: int) -> bool:
        return token_id in self._control

    # --- encode / decode --------------------------------------------------------------------
    def _wrap(self, ids: list[int], bos: bool, eos: bool) -> list[int]:
        if bos and self.bos_id >= 0:
            ids.insert(0, self.bos_id)
        if eos and self.eos_id >= 0:
            ids.append(self.eos_id)
        return ids

    def encode(self, text: str, bos: bool = True, eos: bool = False) -> list[int]:
        """Token ids for ``text``; equals ``SentencePieceProcessor.encode`` plus BOS/EOS."""
        return self._wrap(list(self._tok.encode(text, add_special_tokens=False).ids), bos, eos)

    def encode_batch(self, texts: Sequence[str], bos: bool = True, eos: bool = False) -> list[list[int]]:
        """Batched ``encode`` (parallel in the Rust backend)."""
        encs = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [self._wrap(list(e.ids), bos, eos) for e in encs]

    def encode_without_dummy_prefix(self, text: str) -> list[int]:
        """Encode ``text`` as a continuation: no implicit leading "▁", no BOS/EOS.

        Equivalent to sentencepiece's ``encode(sentinel + text)`` minus the sentinel's tokens
        (Code Llama's ``encode_infilling``), without depending on how a sentinel tokenizes.
        """
        if self._tok_no_prefix is None:
            self._tok_no_prefix = build_tokenizer(self.proto, self.source, dummy_prefix=False)
        return list(self._tok_no_prefix.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        """Text for ``ids``, exactly as ``SentencePieceProcessor.decode``.

        Done here rather than by the ``tokenizers`` decoder because sentencepiece's rules
        differ on generated (not encoded) sequences: control pieces are invisible, the dummy
        "▁" is dropped only from the first visible piece, unk shows ``unk_surface``, and each
        structurally invalid byte of a ``<0xNN>`` run becomes one U+FFFD (valid chars around
        it survive).
        """
        spec = self.proto.normalizer_spec
        strip_bos = spec.add_dummy_prefix or spec.remove_extra_whitespaces
        out: list[str] = []
        pending = bytearray()
        is_bos_ws, bos_ws_seen, visible = True, False, False
        for raw in ids:
            i = int(raw)
            if not 0 <= i < self.vocab_size:
                raise IndexError(f"token id {i} out of range [0, {self.vocab_size})")
            byte = self._byte_of[i]
            if byte >= 0:
                pending.append(byte)
                continue
            if pending:
                out.append(decode_utf8_bytes(pending))
                pending.clear()
                visible = True
            if bos_ws_seen or visible:
                is_bos_ws = False
            p = self.proto.pieces[i]
            bos_ws_seen = False
            if p.type == PieceType.CONTROL:
                continue
            if p.type == PieceType.UNKNOWN:
                out.append(self.proto.trainer_spec.unk_surface)
                visible = visible or bool(out[-1])
                continue
            piece = p.piece
            if is_bos_ws and strip_bos and piece.startswith(SPACE):
                piece = piece[1:]
                bos_ws_seen = not spec.remove_extra_whitespaces
            out.append(piece.replace(SPACE, " "))
            visible = visible or bool(piece)
        if pending:
            out.append(decode_utf8_bytes(pending))
        return "".join(out)

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> list[str]:
        return [self.decode(ids) for ids in batch]

    # --- persistence ------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Tokenizer:
        """The underlying ``tokenizers.Tokenizer`` (BOS added by its post-processor)."""
        return self._tok

    @property
    def model_bytes(self) -> bytes:
        """The original ``tokenizer.model`` bytes."""
        return self._raw

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the original ``tokenizer.model`` into ``directory``; returns its path."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        path = out / self.MODEL_FILE
        path.write_bytes(self._raw)
        return path

    def to_tokenizer_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the equivalent ``tokenizer.json`` (loadable with ``tokenizers.Tokenizer``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tok.save(os.fspath(path))
        return path

    def __repr__(self) -> str:
        return f"SentencePieceTokenizer(source={self.source!r}, vocab_size={self.vocab_size})"
