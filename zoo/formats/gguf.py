"""Reading llama.cpp's GGUF files of the llama architecture (LLaMA, Llama 2, Code Llama,
Mistral 7B-style models).

Import: the header is parsed here, every count, length and offset checked against the file's
size before anything is allocated (a hostile or truncated file is a CheckpointError naming the
file and the tensor, never a numpy traceback); the spec is built from the `llama.*` metadata;
tensors are views of a private memory map (F32, F16, BF16) or dequantized to float32 by the
`gguf` package's own numpy code (`gguf.quants.dequantize`: Q8_0, Q4_0, the K-quants Q4_K/Q6_K
of a Q4_K_M file …). Names and the q/k row order come from the key map specs/formats/gguf.yaml.
A SentencePiece vocabulary in the metadata (`tokenizer.ggml.model == "llama"`) becomes a zoo
SentencePieceTokenizer. Nothing the file says is used as a path: a GGUF file opens no other file.

Export is gguf_write.py.
"""

from __future__ import annotations

import functools
import mmap
import os
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..checkpoint import CheckpointError
from ..compiler.errors import UsageError
from ..compiler.schema import (
    Attention,
    Decoder,
    ModelSpec,
    RMSNorm,
    Rope,
    SwiGLU,
    TokenizerSpec,
)
from .transforms import READ_ERRORS, unreadable

SUFFIX = ".gguf"
ARCH = "llama"
LAYOUT = "gguf"  # specs/formats/gguf.yaml
MAGIC = b"GGUF"
VERSIONS = (2, 3)  # v1 (2023) had 32-bit counts; llama.cpp itself no longer reads it
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
TOKENIZER_FILE = "tokenizer.model"

# GGUF metadata value types: id -> (struct format, numpy dtype); 8 is a string, 9 an array
_SCALARS = {0: ("<B", "<u1"), 1: ("<b", "<i1"), 2: ("<H", "<u2"), 3: ("<h", "<i2"), 4: ("<I", "<u4"),
            5: ("<i", "<i4"), 6: ("<f", "<f4"), 7: ("<?", "?"), 10: ("<Q", "<u8"), 11: ("<q", "<i8"),
            12: ("<d", "<f8")}
_STRING, _ARRAY, _FLOAT32 = 8, 9, 6


def gguf_package() -> Any:
    """The `gguf` package (a zoo dependency; imported on first use)."""
    try:
        import gguf
    except ImportError:  # pragma: no cover - installed with zoo
        raise UsageError("GGUF files need the `gguf` package: pip install gguf") from None
    return gguf


def is_gguf_file(path: str | Path) -> bool:
    """A path naming an existing .gguf file (False, not an exception, for names the OS refuses)."""
    try:
        p = Path(path).expanduser()
        return p.suffix.lower() == SUFFIX and p.is_file()
    except (OSError, ValueError, RuntimeError):
        return False


def gguf_in_folder(folder: Path) -> Path:
    """The one .gguf file of a folder (several: an error naming them; load one by its path)."""
    found = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() == SUFFIX and p.is_file())
    if not found:
        raise CheckpointError(f"{folder}: no .gguf file")
    if len(found) > 1:
        raise CheckpointError(f"{folder}: holds {len(found)} .gguf files ({', '.join(p.name for p in found[:4])}"
                              f"{' …' if len(found) > 4 else ''}); load one by its path")
    return found[0]


# --- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # torch order (GGUF lists ne0, the innermost, first)
    type: int  # GGMLQuantizationType
    offset: int  # from the start of the data section
    nbytes: int


class _Corrupt(Exception):
    """Internal: re-raised as a CheckpointError naming the file."""


class _Cursor:
    def __init__(self, buf: Any):
        self.buf, self.pos, self.end = buf, 0, len(buf)

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or n > self.end - self.pos:
            raise _Corrupt(f"truncated: {what} needs {n:,} bytes at offset {self.pos:,}, the file has "
                           f"{self.end - self.pos:,} left")
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        n = self.unpack("<Q", what)
        try:
            return self.take(n, what).decode("utf-8")
        except UnicodeDecodeError:
            raise _Corrupt(f"{what} is not UTF-8") from None

    def value(self, vtype: int, what: str, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            v = self.unpack(_SCALARS[vtype][0], what)
            return float32_value(v) if vtype == _FLOAT32 else v
        if vtype == _STRING:
            return self.string(what)
        if vtype != _ARRAY:
            raise _Corrupt(f"{what}: unknown value type {vtype}")
        if depth > 2:
            raise _Corrupt(f"{what}: arrays nested too deep")
        etype, n = self.unpack("<I", what), self.unpack("<Q", what)
        if etype in _SCALARS:
            size = struct.calcsize(_SCALARS[etype][0])
            raw = self.take(n * size if n <= self.end else -1, what)
            arr = np.frombuffer(raw, dtype=_SCALARS[etype][1])
            return [float32_value(x) for x in arr.tolist()] if etype == _FLOAT32 else arr.tolist()
        if n * 8 > self.end - self.pos:  # every string or array element takes at least 8 bytes
            raise _Corrupt(f"truncated: {what} claims {n:,} elements, the file has {self.end - self.pos:,} bytes left")
        return [self.value(etype, what, depth + 1) for _ in range(n)]


def float32_value(v: float) -> float:
    """A float32 metadata value as the decimal it was written from (1e-05, not 9.99999974e-06)."""
    return float(str(np.float32(v)))


class GGUFFile:
    """One GGUF file: its metadata (key -> value) and tensor table, checked; tensors on demand."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < 24:
                    raise CheckpointError(f"{self.path}: not a GGUF file ({size} bytes)")
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)  # private: never writes back
        except OSError as e:
            raise CheckpointError(f"{self.path}: cannot read it ({e.strerror or e})") from None
        try:
            self._parse()
        except _Corrupt as e:
            raise CheckpointError(f"{self.path}: corrupt GGUF file: {e}") from None

    def _parse(self) -> None:
        cur = _Cursor(self._map)
        magic = cur.take(4, "magic")
        if magic != MAGIC:
            raise CheckpointError(f"{self.path}: bad magic {magic!r}: not a GGUF file (expected {MAGIC!r})")
        version = cur.unpack("<I", "version")
        if version not in VERSIONS:
            swapped = struct.unpack(">I", struct.pack("<I", version))[0]
            why = "a big-endian file" if swapped in VERSIONS else f"version {version}"
            raise CheckpointError(f"{self.path}: GGUF {why}; zoo reads little-endian GGUF v2 and v3")
        self.version = version
        n_tensors, n_kv = cur.unpack("<Q", "tensor count"), cur.unpack("<Q", "metadata count")
        if n_kv * 12 > cur.end - cur.pos or n_tensors * 24 > cur.end - cur.pos:
            raise _Corrupt(f"truncated: the header claims {n_kv:,} metadata entries and {n_tensors:,} tensors, "
                           f"more than {cur.end:,} bytes can hold")
        meta: dict[str, Any] = {}
        for k in range(n_kv):
            key = cur.string(f"metadata key #{k}")
            meta[key] = cur.value(cur.unpack("<I", f"metadata {key}"), f"metadata {key}")
        self.metadata = meta
        align = meta.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(align, int) or isinstance(align, bool) or align <= 0 or align & (align - 1):
            raise _Corrupt(f"general.alignment {align!r} is not a power of two")
        infos = []
        for k in range(n_tensors):
            name = cur.string(f"tensor #{k}'s name")
            n_dims = cur.unpack("<I", f"tensor {name}")
            if not 1 <= n_dims <= MAX_DIMS:
                raise _Corrupt(f"tensor {name}: {n_dims} dimensions (GGML has 1 to {MAX_DIMS})")
            dims = [cur.unpack("<Q", f"tensor {name}") for _ in range(n_dims)]
            infos.append((name, dims, cur.unpack("<I", f"tensor {name}"), cur.unpack("<Q", f"tensor {name}")))
        self.data_offset = -(-cur.pos // align) * align
        data_size = cur.end - self.data_offset
        self.tensors: dict[str, TensorInfo] = {}
        for name, dims, ttype, offset in infos:
            info = self._tensor_info(name, dims, ttype, offset, align, data_size)
            if name in self.tensors:
                raise _Corrupt(f"tensor {name} is listed twice")
            self.tensors[name] = info

    def _tensor_info(self, name: str, dims: list[int], ttype: int, offset: int, align: int, data_size: int) -> TensorInfo:
        g = gguf_package()
        try:
            qtype = g.GGMLQuantizationType(ttype)
        except ValueError:
            raise CheckpointError(f"{self.path}: tensor {name}: unknown tensor type {ttype}") from None
        if qtype not in readable_types():
            raise CheckpointError(f"{self.path}: tensor {name}: type {qtype.name} is not supported (zoo reads "
                                  f"{', '.join(t.name for t in readable_types())})")
        if any(d < 1 or d > 2**40 for d in dims) or int(np.prod(dims, dtype=object)) > 2**42:
            raise _Corrupt(f"tensor {name}: impossible shape {dims}")
        block, type_size = g.GGML_QUANT_SIZES[qtype]
        if dims[0] % block:
            raise _Corrupt(f"tensor {name}: rows of {dims[0]} do not split into {qtype.name} blocks of {block}")
        nbytes = int(np.prod(dims, dtype=object)) // block * type_size
        if offset % align:
            raise _Corrupt(f"tensor {name}: data offset {offset} is not aligned to {align}")
        if offset + nbytes > data_size:
            raise CheckpointError(f"{self.path}: truncated: tensor {name} ({qtype.name}, shape "
                                  f"{tuple(reversed(dims))}) needs bytes {offset:,}..{offset + nbytes:,} of the data "
                                  f"section, which holds {max(data_size, 0):,}")
        return TensorInfo(name, tuple(reversed(dims)), int(qtype), offset, nbytes)

    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes as stored (a view of the map)."""
        info = self.tensors[name]
        return np.frombuffer(self._map, dtype=np.uint8, count=info.nbytes, offset=self.data_offset + info.offset)

    def tensor(self, name: str) -> torch.Tensor:
        """F32/F16/BF16 as they are stored (views of the map), any quantized type dequantized to
        float32 by gguf's reference code."""
        g = gguf_package()
        info = self.tensors[name]
        qtype = g.GGMLQuantizationType(info.type)
        raw = self.raw(name)
        if qtype == g.GGMLQuantizationType.F32:
            return torch.from_numpy(raw.view("<f4").reshape(info.shape))
        if qtype == g.GGMLQuantizationType.F16:
            return torch.from_numpy(raw.view("<f2").reshape(info.shape))
        if qtype == g.GGMLQuantizationType.BF16:
            return torch.from_numpy(raw.view("<i2").reshape(info.shape)).view(torch.bfloat16)
        rows = raw.reshape(-1, info.nbytes // max(1, int(np.prod(info.shape[:-1], dtype=np.int64))))
        out = g.quants.dequantize(rows, qtype).reshape(info.shape)
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))

    def close(self) -> None:
        self.tensors = {}


@functools.lru_cache(maxsize=1)
def readable_types() -> tuple[Any, ...]:
    """The GGML types zoo reads: float types as they are, quantized ones by gguf's dequantize."""
    Q = gguf_package().GGMLQuantizationType
    return (Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K)


class GGUFSource:
    """A GGUF file as a tensor source for loading (zoo/loading.py stream_in)."""

    #: what a model loaded with no dtype is cast to: quantized tensors come out float32, and
    #: llama.cpp's F16/BF16 files keep their norms F32, so one dtype needs choosing
    load_dtype = torch.float32

    def __init__(self, file: GGUFFile):
        self.file = file
        self.where = str(file.path)

    def shapes(self, shard_dims: Mapping[str, int | None] | None = None) -> dict[str, tuple[int, ...]]:
        return {n: t.shape for n, t in self.file.tensors.items()}

    def order_key(self, name: str) -> tuple[str, int]:
        info = self.file.tensors.get(name)
        return ("", info.offset if info else 0)

    def get(self, name: str) -> torch.Tensor:
        return self.file.tensor(name)

    def release(self, name: str) -> None:
        from .meta import drop_pages

        drop_pages(torch.from_numpy(self.file.raw(name)))

    def close(self) -> None:
        self.file.close()


# --- metadata -> spec ----------------------------------------------------------------------------


def _key(meta: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = ...) -> Any:
    if key not in meta:
        if default is ...:
            raise CheckpointError(f"{where}: metadata {key} is missing")
        return default
    v = meta[key]
    if isinstance(v, bool) and kind is not bool or not isinstance(v, kind):
        raise CheckpointError(f"{where}: metadata {key} is {str(v)[:60]!r}, not a {getattr(kind, '__name__', kind)}")
    return v


def _per_layer(v: Any, key: str, where: str) -> int:
    """llama.cpp allows some sizes per layer (arrays); zoo reads files where they are one number."""
    if isinstance(v, list):
        if not v or len(set(v)) != 1:
            raise CheckpointError(f"{where}: {key} differs between layers ({v[:8]}); not supported yet")
        v = v[0]
    if not isinstance(v, int) or isinstance(v, bool):
        raise CheckpointError(f"{where}: metadata {key} is {str(v)[:60]!r}, not a whole number")
    return v


def architecture(meta: Mapping[str, Any], where: str) -> str:
    arch = meta.get("general.architecture")
    if arch != ARCH:
        raise CheckpointError(f"{where}: general.architecture is {arch!r}; zoo reads GGUF files of the {ARCH!r} "
                              "architecture (LLaMA, Llama 2, Code Llama, Mistral 7B) only")
    return arch


def spec_from_gguf(meta: Mapping[str, Any], tensor_names: set[str] | Mapping[str, Any], name: str, where: str,
                   vocab_size: int | None = None, tokenizer: TokenizerSpec | None = None) -> ModelSpec:
    """A zoo spec from a llama GGUF file's metadata (and which tensors it holds: a file without
    output.weight ties the output to the embedding)."""
    a = architecture(meta, where) + "."
    if meta.get(a + "expert_count"):
        raise CheckpointError(f"{where}: a mixture-of-experts llama GGUF ({a}expert_count "
                              f"{meta[a + 'expert_count']}); not supported yet")
    if "rope_freqs.weight" in tensor_names:
        raise CheckpointError(f"{where}: rope_freqs.weight (per-frequency RoPE factors, Llama 3.1-style "
                              "scaling) is not supported yet")
    dim = _per_layer(_key(meta, a + "embedding_length", int, where), a + "embedding_length", where)
    n_heads = _per_layer(_key(meta, a + "attention.head_count", (int, list), where), a + "attention.head_count", where)
    n_kv = _per_layer(_key(meta, a + "attention.head_count_kv", (int, list), where, n_heads),
                      a + "attention.head_count_kv", where)
    hidden = _per_layer(_key(meta, a + "feed_forward_length", (int, list), where), a + "feed_forward_length", where)
    head_dim = _key(meta, a + "attention.key_length", int, where, None)
    if _key(meta, a + "attention.value_length", int, where, head_dim) != head_dim:
        raise CheckpointError(f"{where}: attention.key_length and value_length differ; not supported")
    hd = head_dim or (dim // n_heads if n_heads else 0)
    rot = _key(meta, a + "rope.dimension_count", int, where, hd)
    if vocab_size is None:
        tokens = meta.get("tokenizer.ggml.tokens")
        vocab_size = len(tokens) if isinstance(tokens, list) and tokens else _key(meta, a + "vocab_size", int, where, None)
    if vocab_size is None:
        raise CheckpointError(f"{where}: no vocabulary size (no tokenizer.ggml.tokens, no {a}vocab_size)")
    try:
        rope = Rope(theta=_key(meta, a + "rope.freq_base", (int, float), where, 10000.0),
                    fraction=rot / hd if hd else 1.0, scaling=_rope_scaling(meta, a, where))
        att = Attention(n_heads=n_heads, n_kv_heads=n_kv, head_dim=head_dim, rope=rope,
                        qkv_bias="blk.0.attn_q.bias" in tensor_names, o_bias="blk.0.attn_output.bias" in tensor_names)
        arch = Decoder(dim=dim, n_layers=_key(meta, a + "block_count", int, where), vocab_size=vocab_size,
                       max_seq_len=_key(meta, a + "context_length", int, where, 2048), attention=att,
                       ffn=SwiGLU(hidden_dim=hidden),
                       norm=RMSNorm(eps=_key(meta, a + "attention.layer_norm_rms_epsilon", (int, float), where, 1e-5)),
                       tie_embeddings="output.weight" not in tensor_names)
        return ModelSpec(name=name, family="llama", description=f"imported from a llama.cpp GGUF file ({name})",
                         arch=arch, tokenizer=tokenizer)
    except READ_ERRORS as e:
        raise CheckpointError(str(unreadable(f"{where}: the llama metadata describes no model zoo can build", e))) from None


def _rope_scaling(meta: Mapping[str, Any], a: str, where: str) -> dict[str, Any] | None:
    kind = _key(meta, a + "rope.scaling.type", str, where, None)
    factor = _key(meta, a + "rope.scaling.factor", (int, float), where, None)
    if kind is None and meta.get(a + "rope.scale_linear") is not None:  # the older key
        kind, factor = "linear", _key(meta, a + "rope.scale_linear", (int, float), where)
    if kind in (None, "none") or factor in (None, 0, 1, 1.0) and kind == "linear":
        return None
    if kind == "linear":
        return {"kind": "linear", "factor": factor}
    if kind == "yarn":
        out = {"kind": "yarn", "factor": factor,
               "original_max_position_embeddings": _key(meta, a + "rope.scaling.original_context_length", int, where)}
        for key, field in (("yarn_beta_fast", "beta_fast"), ("yarn_beta_slow", "beta_slow")):
            if meta.get(a + "rope.scaling." + key) is not None:
                out[field] = meta[a + "rope.scaling." + key]
        return out
    raise CheckpointError(f"{where}: RoPE scaling {kind!r} is not supported (zoo reads none, linear, yarn)")


# --- the vocabulary ------------------------------------------------------------------------------


def tokenizer_from_gguf(meta: Mapping[str, Any], where: str) -> tuple[Any, TokenizerSpec | None]:
    """A SentencePieceTokenizer from `tokenizer.ggml.*` when the file carries a llama (SentencePiece)
    vocabulary, and the spec's tokenizer section; (None, None) with a warning for any other
    (gpt2-style BPE vocabularies are not rebuilt yet: the model loads without a tokenizer)."""
    from ..runtime.tokenizers import SentencePieceTokenizer
    from ..runtime.tokenizers.errors import TokenizerError
    from ..runtime.tokenizers.spm_proto import (
        ModelProto,
        ModelType,
        NormalizerSpec,
        PieceType,
        SentencePiece,
        TrainerSpec,
        serialize_model_proto,
    )

    model = meta.get("tokenizer.ggml.model")
    if model != "llama":
        if model not in (None, "none", "no_vocab"):
            warnings.warn(f"{where}: tokenizer.ggml.model is {model!r}; zoo rebuilds SentencePiece ('llama') "
                          "vocabularies only: loaded without a tokenizer", stacklevel=4)
        return None, None
    try:
        tokens = meta["tokenizer.ggml.tokens"]
        n = len(tokens)
        scores = meta.get("tokenizer.ggml.scores", [0.0] * n)
        types = meta.get("tokenizer.ggml.token_type", [int(PieceType.NORMAL)] * n)
        if not (isinstance(tokens, list) and len(scores) == n and len(types) == n and n):
            raise ValueError(f"{n} tokens, {len(scores)} scores, {len(types)} token types")
        pieces = tuple(SentencePiece(str(t), float(s), PieceType(int(k))) for t, s, k in zip(tokens, scores, types))

        def tid(key: str, default: int) -> int:
            v = meta.get(f"tokenizer.ggml.{key}", default)
            return v if isinstance(v, int) and 0 <= v < n else -1

        unk, bos, eos, pad = tid("unknown_token_id", 0), tid("bos_token_id", 1), tid("eos_token_id", 2), \
            tid("padding_token_id", -1)
        trainer = TrainerSpec(model_type=ModelType.BPE, vocab_size=n,
                              byte_fallback=any(p.type == PieceType.BYTE for p in pieces),
                              unk_id=unk, bos_id=bos, eos_id=eos, pad_id=pad,
                              **{f"{k}_piece": pieces[i].piece for k, i in (("unk", unk), ("bos", bos), ("eos", eos),
                                                                             ("pad", pad)) if i >= 0})
        # llama.cpp applies no normalization beyond the "▁" prefix and whitespace escaping
        norm = NormalizerSpec(name="identity", add_dummy_prefix=bool(meta.get("tokenizer.ggml.add_space_prefix", True)),
                              remove_extra_whitespaces=False)
        proto = ModelProto(pieces, trainer, norm)
        with warnings.catch_warnings():
            if all(re.fullmatch(r"\[PAD\d+\]", p.piece) for p in pieces if p.type == PieceType.UNUSED):
                # converters' padding to the embedding's size: no text merges into "[PAD130]"
                warnings.filterwarnings("ignore", message=".*UNUSED pieces")
            tok = SentencePieceTokenizer(proto, serialize_model_proto(proto), f"{where} (tokenizer.ggml.*)")
    except (TokenizerError, *READ_ERRORS) as e:
        warnings.warn(f"{where}: the SentencePiece vocabulary in tokenizer.ggml.* cannot be used "
                      f"({type(e).__name__}: {str(e)[:200]}): loaded without a tokenizer", stacklevel=4)
        return None, None
    spec = TokenizerSpec(kind="sentencepiece", file=TOKENIZER_FILE, bos_id=bos if bos >= 0 else None,
                         eos_id=eos if eos >= 0 else None, pad_id=pad if pad >= 0 else None)
    return tok, spec


@dataclass
class Opened:
    file: GGUFFile
    spec: ModelSpec
    tokenizer: Any


def open_gguf(path: Path, base_spec: ModelSpec | None = None) -> Opened:
    """Parse a GGUF file (checked), its spec (`base_spec` replaces the one its metadata gives)
    and its tokenizer."""
    f = GGUFFile(path)
    where = str(f.path)
    architecture(f.metadata, where)
    parts = f.metadata.get("split.count", 1)
    if parts != 1:
        raise CheckpointError(f"{where}: one part of a split GGUF ({parts!r} parts); merge them first "
                              "(llama-gguf-split --merge)")
    tok, tok_spec = tokenizer_from_gguf(f.metadata, where)
    if base_spec is not None:
        return Opened(f, base_spec, tok)
    embd = f.tensors.get("token_embd.weight")
    vocab = len(f.metadata["tokenizer.ggml.tokens"]) if tok is not None else (embd.shape[0] if embd else None)
    name = _spec_name(f.metadata.get("general.name"), f.path)
    return Opened(f, spec_from_gguf(f.metadata, f.tensors, name, where, vocab, tok_spec), tok)


def _spec_name(general: Any, path: Path) -> str:
    stem = path.name[: -len(SUFFIX)] if path.name.lower().endswith(SUFFIX) else path.name
    return stem or (general if isinstance(general, str) and general else "gguf-model")
