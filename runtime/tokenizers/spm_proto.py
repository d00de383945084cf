"""A minimal protobuf wire-format reader for SentencePiece ``tokenizer.model`` files.

Why not ``protobuf`` / ``sentencepiece``: the runtime must load LLaMA-family tokenizers with
no dependency beyond ``tokenizers``, and a ``ModelProto`` only needs three wire types.
Field numbers follow sentencepiece's ``sentencepiece_model.proto``; absent fields take the
proto2 defaults declared there (e.g. ``model_type`` defaults to UNIGRAM, ``pad_id`` to -1),
because a model file only stores fields that differ from nothing at all, not from defaults.
"""

from __future__ import annotations

import enum
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from .errors import TokenizerError

# Wire types (https://protobuf.dev/programming-guides/encoding/).
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


class PieceType(enum.IntEnum):
    """``ModelProto.SentencePiece.Type``."""

    NORMAL = 1
    UNKNOWN = 2
    CONTROL = 3
    USER_DEFINED = 4
    UNUSED = 5
    BYTE = 6


class ModelType(enum.IntEnum):
    """``TrainerSpec.ModelType``."""

    UNIGRAM = 1
    BPE = 2
    WORD = 3
    CHAR = 4


@dataclass(frozen=True)
class SentencePiece:
    """One vocabulary entry; its id is its index in ``ModelProto.pieces``."""

    piece: str
    score: float = 0.0
    type: PieceType = PieceType.NORMAL


@dataclass(frozen=True)
class TrainerSpec:
    """The subset of ``TrainerSpec`` that affects encoding/decoding (defaults = proto2's)."""

    model_type: ModelType = ModelType.UNIGRAM
    vocab_size: int = 8000
    treat_whitespace_as_suffix: bool = False
    byte_fallback: bool = False
    unk_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    pad_id: int = -1
    unk_surface: str = " \u2047 "
    unk_piece: str = "<unk>"
    bos_piece: str = "<s>"
    eos_piece: str = "</s>"
    pad_piece: str = "<pad>"


@dataclass(frozen=True)
class NormalizerSpec:
    """``NormalizerSpec`` (defaults = proto2's)."""

    name: str = ""
    precompiled_charsmap: bytes = b""
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    escape_whitespaces: bool = True
    normalization_rule_tsv: str = ""


@dataclass(frozen=True)
class ModelProto:
    """A parsed ``tokenizer.model``."""

    pieces: tuple[SentencePiece, ...]
    trainer_spec: TrainerSpec = field(default_factory=TrainerSpec)
    normalizer_spec: NormalizerSpec = field(default_factory=NormalizerSpec)


class _Corrupt(Exception):
    """Internal: raised by the low-level reader, re-raised as TokenizerError with the source."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    if pos < len(buf) and buf[pos] < 0x80:  # fast path: keys and small values are one byte
        return buf[pos], pos + 1
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _Corrupt(f"truncated varint at byte {pos}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _Corrupt(f"varint longer than 10 bytes at byte {pos}")


def iter_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield ``(field_number, wire_type, value)``; value is an int for varints, else bytes."""
    pos, end = 0, len(buf)
    while pos < end:
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Corrupt(f"field number 0 at byte {pos}")
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == _LEN:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise _Corrupt(f"field {number} claims {size} bytes but only {end - pos} remain")
            yield number, wire, buf[pos : pos + size]
            pos += size
        elif wire in (_FIXED32, _FIXED64):
            size = 4 if wire == _FIXED32 else 8
            if pos + size > end:
                raise _Corrupt(f"truncated fixed{size * 8} field {number}")
            yield number, wire, buf[pos : pos + size]
            pos += size
        else:  # 3/4 are deprecated groups, 6/7 do not exist: not a ModelProto.
            raise _Corrupt(f"unsupported wire type {wire} for field {number}")


def _expect(number: int, wire: int, want: int, message: str) -> None:
    if wire != want:
        raise _Corrupt(f"{message} field {number} has wire type {wire}, expected {want}")


def _as_bytes(number: int, wire: int, value: int | bytes, message: str, want: int = _LEN) -> bytes:
    """A length-delimited (or fixed) field's payload, checking the wire type."""
    _expect(number, wire, want, message)
    assert isinstance(value, bytes)
    return value


def _as_int(number: int, wire: int, value: int | bytes, message: str) -> int:
    """A varint field as a signed int32 (proto2 int32/bool/enum), checking the wire type."""
    _expect(number, wire, _VARINT, message)
    assert isinstance(value, int)
    return _int32(value)


def _int32(v: int) -> int:
    """Reinterpret a varint as a signed int32 (negatives are sign-extended to 64 bits)."""
    v &= 0xFFFFFFFFFFFFFFFF
    if v >= 1 << 63:
        v -= 1 << 64
    return v


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Corrupt(f"{what} is not valid UTF-8") from e


def _float(raw: bytes) -> float:
    return struct.unpack("<f", raw)[0]


def _parse_piece(buf: bytes) -> SentencePiece:
    piece, score, ptype = None, 0.0, PieceType.NORMAL
    for number, wire, value in iter_fields(buf):
        if number == 1:
            piece = _text(_as_bytes(number, wire, value, "SentencePiece"), "piece")
        elif number == 2:
            score = _float(_as_bytes(number, wire, value, "SentencePiece", _FIXED32))
        elif number == 3:
            kind = _as_int(number, wire, value, "SentencePiece")
            try:
                ptype = PieceType(kind)
            except ValueError:
                raise _Corrupt(f"unknown piece type {kind}") from None
    if piece is None:
        raise _Corrupt("SentencePiece without a piece string")
    return SentencePiece(piece, score, ptype)


# field number -> (attribute, kind) for the scalar fields we keep.
_TRAINER_FIELDS = {
    3: ("model_type", "enum"),
    4: ("vocab_size", "int"),
    24: ("treat_whitespace_as_suffix", "bool"),
    35: ("byte_fallback", "bool"),
    40: ("unk_id", "int"),
    41: ("bos_id", "int"),
    42: ("eos_id", "int"),
    43: ("pad_id", "int"),
    44: ("unk_surface", "str"),
    45: ("unk_piece", "str"),
    46: ("bos_piece", "str"),
    47: ("eos_piece", "str"),
    48: ("pad_piece", "str"),
}
_NORMALIZER_FIELDS = {
    1: ("name", "str"),
    2: ("precompiled_charsmap", "bytes"),
    3: ("add_dummy_prefix", "bool"),
    4: ("remove_extra_whitespaces", "bool"),
    5: ("escape_whitespaces", "bool"),
    6: ("normalization_rule_tsv", "str"),
}


def _parse_scalars(buf: bytes, table: dict[int, tuple[str, str]], message: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for number, wire, value in iter_fields(buf):
        if number not in table:
            continue  # training-only options: irrelevant to encoding.
        name, kind = table[number]
        if kind in ("str", "bytes"):
            raw = _as_bytes(number, wire, value, message)
            out[name] = _text(raw, name) if kind == "str" else raw
        else:
            v = _as_int(number, wire, value, message)
            if kind == "bool":
                out[name] = v != 0
            elif kind == "enum":
                try:
                    out[name] = ModelType(v)
                except ValueError:
                    raise _Corrupt(f"unknown model_type {v}") from None
            else:
                out[name] = v
    return out


def parse_model_proto(data: bytes, source: str = "<bytes>") -> ModelProto:
    """Parse serialized ``ModelProto`` bytes; ``source`` names the origin in error messages."""
    try:
        pieces: list[SentencePiece] = []
        trainer: dict[str, object] = {}
        normalizer: dict[str, object] = {}
        for number, wire, value in iter_fields(data):
            if number == 1:
                pieces.append(_parse_piece(_as_bytes(number, wire, value, "ModelProto")))
            elif number == 2:
                raw = _as_bytes(number, wire, value, "ModelProto")
                trainer.update(_parse_scalars(raw, _TRAINER_FIELDS, "TrainerSpec"))
            elif number == 3:
                raw = _as_bytes(number, wire, value, "ModelProto")
                normalizer.update(_parse_scalars(raw, _NORMALIZER_FIELDS, "NormalizerSpec"))
        if not pieces:
            raise _Corrupt("no vocabulary pieces found")
    except _Corrupt as e:
        raise TokenizerError(f"{source}: not a valid SentencePiece model ({e})") from None
    trainer_spec = TrainerSpec(**trainer)  # type: ignore[arg-type]
    return ModelProto(tuple(pieces), trainer_spec, NormalizerSpec(**normalizer))  # type: ignore[arg-type]


def load_model_proto(path: str | os.PathLike[str]) -> tuple[ModelProto, bytes]:
    """Read and parse ``path``; returns the proto and the raw bytes (kept for re-saving)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise TokenizerError(f"{os.fspath(path)}: cannot read SentencePiece model ({e})") from e
    return parse_model_proto(data, os.fspath(path)), data


# --- writing (the inverse of parse_model_proto, for vocabularies that arrive without a file) ---


def _put_varint(out: bytearray, v: int) -> None:
    v &= 0xFFFFFFFFFFFFFFFF  # negative int32s are sign-extended to ten bytes, as protobuf does
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _put_len(out: bytearray, number: int, payload: bytes) -> None:
    _put_varint(out, number << 3 | _LEN)
    _put_varint(out, len(payload))
    out += payload


def _put_scalars(obj: object, table: dict[int, tuple[str, str]]) -> bytes:
    out = bytearray()
    for number, (name, kind) in sorted(table.items()):
        v = getattr(obj, name)
        if kind in ("str", "bytes"):
            _put_len(out, number, v.encode("utf-8") if kind == "str" else bytes(v))  # type: ignore[union-attr]
        else:
            _put_varint(out, number << 3 | _VARINT)
            _put_varint(out, int(v))  # type: ignore[call-overload]
    return bytes(out)


def serialize_model_proto(proto: ModelProto) -> bytes:
    """A ``tokenizer.model`` holding ``proto``: every piece, and every trainer/normalizer field
    this module reads (written explicitly, defaults included), so ``parse_model_proto`` (and
    sentencepiece) read back the same model."""
    out = bytearray()
    for p in proto.pieces:
        piece = bytearray()
        _put_len(piece, 1, p.piece.encode("utf-8"))
        _put_varint(piece, 2 << 3 | _FIXED32)
        piece += struct.pack("<f", p.score)
        _put_varint(piece, 3 << 3 | _VARINT)
        _put_varint(piece, int(p.type))
        _put_len(out, 1, bytes(piece))
    _put_len(out, 2, _put_scalars(proto.trainer_spec, _TRAINER_FIELDS))
    _put_len(out, 3, _put_scalars(proto.normalizer_spec, _NORMALIZER_FIELDS))
    return bytes(out)
