"""SentencePiece BPE tokenizer (LLaMA / Code Llama) with sentencepiece-identical ids.

Encoding runs on a ``tokenizers.Tokenizer`` rebuilt from the model file (see ``spm_build`` for
how, and for the known corners). Decoding is done here, in Python, following sentencepiece's
``Decode`` rules exactly, because generated ids are not always well-formed.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer

from .spm_build import (
    SPACE,
    approximation_notes,
    build_tokenizer,
    byte_value,
    dummy_prefix_char,
    pre_prefix_normalize,
    prefix_exempt_forms,
)
from .base import TokenizerBase
from .spm_proto import ModelProto, PieceType, load_model_proto, parse_model_proto


def _utf8_sequence_length(lead: int) -> int:
    """Length of the UTF-8 sequence a lead byte announces; 0 if it cannot start one."""
    if lead < 0x80:
        return 1
    if 0xC2 <= lead < 0xE0:
        return 2
    if 0xE0 <= lead < 0xF0:
        return 3
    return 4 if 0xF0 <= lead < 0xF5 else 0


def decode_utf8_bytes(data: bytes | bytearray) -> str:
    """UTF-8 decode where each structurally invalid byte becomes one U+FFFD.

    This is sentencepiece's rule; Python's ``errors="replace"`` instead folds a truncated
    multi-byte prefix into a single U+FFFD, which would change generated text.
    """
    out: list[str] = []
    pos = 0
    while pos < len(data):
        size = _utf8_sequence_length(data[pos])
        try:
            out.append(bytes(data[pos : pos + size]).decode("utf-8") if size else "\ufffd")
            pos += size or 1
        except UnicodeDecodeError:  # truncated, bad continuation, overlong or surrogate
            out.append("\ufffd")
            pos += 1
    return "".join(out)


class SentencePieceTokenizer(TokenizerBase):
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
        self._exempt = prefix_exempt_forms(proto)
        self._user_ids = frozenset(i for i, p in enumerate(proto.pieces) if p.type == PieceType.USER_DEFINED)
        self._unk_id = next(i for i, p in enumerate(proto.pieces) if p.type == PieceType.UNKNOWN)
        self._control = frozenset(i for i, p in enumerate(proto.pieces) if p.type == PieceType.CONTROL)
        self._byte_of = [byte_value(p.piece) if p.type == PieceType.BYTE else -1 for p in proto.pieces]

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
        return self._unk_id

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
    def _fix_exempt(self, text: str, ids: list[int]) -> list[int]:
        """Redo an input that is exactly a user piece (see ``prefix_exempt_forms``)."""
        if len(ids) == 1 and ids[0] in self._user_ids:
            normalized = pre_prefix_normalize(self.proto, text)
            if normalized in self._exempt:
                return self.encode_without_dummy_prefix(dummy_prefix_char(self.proto) + normalized)
        return ids

    def encode(self, text: str, bos: bool = True, eos: bool = False) -> list[int]:
        """Token ids for ``text``; equals ``SentencePieceProcessor.encode`` plus BOS/EOS."""
        ids = self._fix_exempt(text, list(self._tok.encode(text, add_special_tokens=False).ids))
        return self._wrap(ids, bos, eos)

    def encode_batch(self, texts: Sequence[str], bos: bool = True, eos: bool = False) -> list[list[int]]:
        """Batched ``encode`` (parallel in the Rust backend)."""
        texts = list(texts)
        encs = self._tok.encode_batch(texts, add_special_tokens=False)
        return [self._wrap(self._fix_exempt(t, list(e.ids)), bos, eos) for t, e in zip(texts, encs)]

    def encode_without_dummy_prefix(self, text: str) -> list[int]:
        """Encode ``text`` as a continuation: no implicit leading "▁", no BOS/EOS.

        Equivalent to sentencepiece's ``encode(sentinel + text)`` minus the sentinel's tokens
        (Code Llama's ``encode_infilling``), without depending on how a sentinel tokenizes.
        """
        if self._tok_no_prefix is None:
            self._tok_no_prefix = build_tokenizer(self.proto, self.source, False, self._tok.model)
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

    # --- persistence ------------------------------------------------------------------------

    @property
    def model_bytes(self) -> bytes:
        """The original ``tokenizer.model`` bytes."""
        return self._raw

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the original ``tokenizer.model`` into ``directory``; returns its path."""
        return self._save_atomic(directory, self.MODEL_FILE, lambda tmp: tmp.write_bytes(self._raw))

    def to_tokenizer_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the equivalent ``tokenizer.json`` (loadable with ``tokenizers.Tokenizer``).

        Its ``encode`` gives the same ids (with BOS, via the post-processor); see
        ``build_decoder`` for where its decoder is less exact than ``decode``.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tok.save(os.fspath(path))
        return path

    def __repr__(self) -> str:
        return f"SentencePieceTokenizer(source={self.source!r}, vocab_size={self.vocab_size})"
