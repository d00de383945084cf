"""Writing llama.cpp's GGUF files (reading is gguf.py): the key map specs/formats/gguf.yaml in
reverse, tensors quantized with `gguf.quants.quantize` (f32, f16, bf16, q8_0, q4_0; 1-D tensors
stay F32 as llama.cpp keeps them) and written with `gguf.GGUFWriter` one tensor at a time, into
a temporary file renamed over the target. The metadata written is read back into a spec that
must describe the model's math.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from ..checkpoint import CheckpointError
from ..compiler.errors import UsageError
from ..compiler.schema import ModelSpec
from .gguf import ARCH, LAYOUT, SUFFIX, float32_value, gguf_package, spec_from_gguf
from .transforms import FormatError

#: --dtype for `zoo convert --to gguf` -> (GGML type of 2-D weights, general.file_type)
DTYPES = {"f32": ("F32", "ALL_F32"), "f16": ("F16", "MOSTLY_F16"), "bf16": ("BF16", "MOSTLY_BF16"),
          "q8_0": ("Q8_0", "MOSTLY_Q8_0"), "q4_0": ("Q4_0", "MOSTLY_Q4_0")}
_ALIASES = {"float32": "f32", "float16": "f16", "half": "f16", "bfloat16": "bf16"}
#: in q4_0 files these stay Q8_0: the embedding and output carry most of the quantization error
#: (llama.cpp's quantizer keeps output.weight at Q6_K by default, which gguf cannot write)
HIGHER_PRECISION = ("token_embd.weight", "output.weight")


def gguf_dtype(dtype: str | torch.dtype | None, model_dtype: torch.dtype | None = None) -> str:
    """The --dtype of a GGUF export (None: the model's own float type)."""
    if dtype is None:
        return {torch.float16: "f16", torch.bfloat16: "bf16"}.get(model_dtype, "f32")  # type: ignore[arg-type]
    key = str(dtype).removeprefix("torch.").lower()
    key = _ALIASES.get(key, key)
    if key not in DTYPES:
        raise UsageError(f"GGUF dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    return key


def tensor_type(name: str, shape: tuple[int, ...], dtype: str) -> Any:
    """The GGML type a tensor is written as: 1-D tensors (norms, biases) F32 as llama.cpp keeps
    them; rows a block does not divide F16 (llama.cpp's converter falls back the same way)."""
    g = gguf_package()
    Q = g.GGMLQuantizationType
    if len(shape) == 1:
        return Q.F32
    qtype = Q[DTYPES[dtype][0]]
    if qtype == Q.Q4_0 and name in HIGHER_PRECISION:
        qtype = Q.Q8_0
    block = g.GGML_QUANT_SIZES[qtype][0]
    return qtype if shape[-1] % block == 0 else Q.F16


def encode_tensor(t: torch.Tensor, qtype: Any) -> np.ndarray:
    """A float tensor in GGML type `qtype`, by gguf's reference quantizer."""
    g = gguf_package()
    Q = g.GGMLQuantizationType
    if qtype == Q.F16 and t.dtype == torch.float16 or qtype == Q.BF16 and t.dtype == torch.bfloat16:
        src = t.detach().cpu().contiguous()
        return src.view(torch.int16).numpy().view("<f2" if qtype == Q.F16 else "<u2")
    return g.quants.quantize(np.ascontiguousarray(t.detach().cpu().float().numpy()), qtype)


def gguf_metadata(spec: ModelSpec, tokenizer: Any, dtype: str) -> dict[str, Any]:
    """The metadata llama.cpp's llama loader reads (llama-model.cpp, llama-vocab.cpp), as plain
    values: ints are written uint32, floats float32, lists as arrays."""
    g = gguf_package()
    text = spec.arch.language_model()
    if spec.arch is not text:
        raise FormatError(f"{spec.name}: GGUF export holds decoders (llama architecture) only, not "
                          f"{spec.arch.kind_name} models")
    blk = text.block(0)
    att, ffn = blk.attention, blk.ffn
    a = ARCH + "."
    meta: dict[str, Any] = {
        "general.architecture": ARCH, "general.name": spec.name, "general.file_type": int(g.LlamaFileType[DTYPES[dtype][1]]),
        "general.quantization_version": int(g.GGML_QUANT_VERSION),
        a + "vocab_size": text.vocab_size, a + "context_length": text.max_seq_len, a + "embedding_length": text.dim,
        a + "block_count": text.n_layers, a + "feed_forward_length": ffn.hidden_dim or 0,
        a + "attention.head_count": att.n_heads, a + "attention.head_count_kv": att.n_kv_heads,
        a + "rope.freq_base": float(att.rope.theta) if att.rope is not None else 10000.0,
        a + "attention.layer_norm_rms_epsilon": float(getattr(blk.norm, "eps", 1e-5)),
        a + "rope.dimension_count": int(att.head_dim * (att.rope.fraction if att.rope is not None else 1)),
    }
    if att.head_dim * att.n_heads != text.dim:
        meta[a + "attention.key_length"] = meta[a + "attention.value_length"] = att.head_dim
    scaling = att.rope.scaling if att.rope is not None else None
    if scaling is not None:
        kind = scaling.kind_name
        meta[a + "rope.scaling.type"] = kind
        meta[a + "rope.scaling.factor"] = float(scaling.factor)
        if kind == "yarn":
            meta[a + "rope.scaling.original_context_length"] = scaling.original_max_position_embeddings
            meta[a + "rope.scaling.yarn_beta_fast"] = float(scaling.beta_fast)
            meta[a + "rope.scaling.yarn_beta_slow"] = float(scaling.beta_slow)
    meta.update(tokenizer_metadata(tokenizer, text.vocab_size, spec.name))
    return meta


def tokenizer_metadata(tok: Any, vocab_size: int, name: str) -> dict[str, Any]:
    """`tokenizer.ggml.*` for a SentencePiece tokenizer (what llama.cpp's "llama" vocabulary
    reads: tokens, scores, token types, special ids, add_bos/add_eos/add_space_prefix); a
    vocabulary shorter than the embedding is padded with unused [PAD{id}] tokens, as llama.cpp's
    converter does. Other tokenizers: tokenizer.ggml.model "none" (llama.cpp runs on ids)."""
    proto = getattr(tok, "proto", None)
    if proto is None:
        if tok is not None:
            warnings.warn(f"{name}: its {type(tok).__name__} is not a SentencePiece model; the GGUF file gets no "
                          "vocabulary (tokenizer.ggml.model 'none')", stacklevel=4)
        return {"tokenizer.ggml.model": "none"}
    pieces = list(proto.pieces)
    if len(pieces) > vocab_size:
        raise FormatError(f"{name}: the tokenizer has {len(pieces)} pieces, the embedding {vocab_size} rows")
    tokens = [p.piece for p in pieces] + [f"[PAD{i}]" for i in range(len(pieces), vocab_size)]
    ts = proto.trainer_spec
    out: dict[str, Any] = {
        "tokenizer.ggml.model": "llama", "tokenizer.ggml.pre": "default", "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": [float(p.score) for p in pieces] + [-1000.0] * (vocab_size - len(pieces)),
        "tokenizer.ggml.token_type": [int(p.type) for p in pieces] + [5] * (vocab_size - len(pieces)),  # 5: UNUSED
        "tokenizer.ggml.add_bos_token": True, "tokenizer.ggml.add_eos_token": False,
        "tokenizer.ggml.add_space_prefix": bool(proto.normalizer_spec.add_dummy_prefix),
    }
    for key, v in (("bos_token_id", ts.bos_id), ("eos_token_id", ts.eos_id), ("unknown_token_id", ts.unk_id),
                   ("padding_token_id", ts.pad_id)):
        if 0 <= v < len(pieces):
            out[f"tokenizer.ggml.{key}"] = v
    return out


def _check_readback(spec: ModelSpec, meta: Mapping[str, Any], tensor_names: set[str]) -> None:
    """The metadata, read back as a spec, must describe the model's math (what the GGUF keys
    cannot say — a sliding window, other norms or FFNs, per-layer overrides — shows up here)."""
    import dataclasses

    from .hf.family import difference

    values = {k: float32_value(v) if isinstance(v, float) else v for k, v in meta.items()}
    try:
        back = spec_from_gguf(values, tensor_names, spec.name, f"GGUF metadata for {spec.name}",
                              vocab_size=spec.arch.language_model().vocab_size)
    except CheckpointError as e:
        raise FormatError(f"{spec.name}: GGUF cannot express it ({e})") from None
    ours, theirs = (s.arch.language_model() for s in (spec, back))
    a, b = ours.config(ours.ir("")), theirs.config(theirs.ir(""))
    why = difference(a, dataclasses.replace(b, max_seq_len=a.max_seq_len))
    if why:
        raise FormatError(f"{spec.name}: a llama GGUF file cannot express this model: {why}")


def _add(writer: Any, key: str, v: Any) -> None:
    if isinstance(v, bool):
        writer.add_bool(key, v)
    elif isinstance(v, int):
        writer.add_uint32(key, v)
    elif isinstance(v, float):
        writer.add_float32(key, v)
    elif isinstance(v, str):
        writer.add_string(key, v)
    else:
        g = gguf_package()
        sub = g.GGUFValueType.STRING if v and isinstance(v[0], str) else \
            g.GGUFValueType.FLOAT32 if v and isinstance(v[0], float) else g.GGUFValueType.INT32
        writer.add_key_value(key, list(v), g.GGUFValueType.ARRAY, sub_type=sub)


def write_gguf(model: Any, path: str | Path, *, dtype: str | torch.dtype | None = None, overwrite: bool = False,
               progress: bool | None = None) -> Path:
    """Write `model` (a llama-architecture zoo model) as one GGUF file llama.cpp loads:
    `dtype` f32, f16, bf16, q8_0 or q4_0 (default: the model's float type). Atomic: the file
    appears whole or not at all."""
    from .keymap import get_format, plan_for

    g = gguf_package()
    target = Path(path)
    if target.suffix.lower() != SUFFIX:
        raise UsageError(f"{target}: a GGUF file name ends in {SUFFIX}")
    if target.is_dir():
        raise UsageError(f"{target} is a folder; give the path of the .gguf file to write")
    if target.exists() and not overwrite:
        raise UsageError(f"{target} exists (overwrite=True / --overwrite replaces it)")
    spec: ModelSpec = model.spec
    stored = getattr(spec, "quantization", None)  # zoo's own int8/int4 storage: not GGUF blocks
    if stored is not None:
        raise FormatError(f"{spec.name}: its weights are stored as zoo {getattr(stored, 'describe', str)()}; "
                          "export its float checkpoint to GGUF (--dtype q8_0 / q4_0 quantizes the llama.cpp way)")
    state = model.state_dict()
    kind = gguf_dtype(dtype, next((t.dtype for t in state.values() if t.is_floating_point()), None))
    plan = plan_for(get_format(LAYOUT), spec)
    shapes = plan.external_shapes()
    meta = gguf_metadata(spec, getattr(model, "tokenizer", None), kind)
    _check_readback(spec, meta, set(shapes))
    types = {n: tensor_type(n, s, kind) for n, s in shapes.items()}
    tensors = dict(plan.to_external(state))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        w = g.GGUFWriter(tmp, ARCH)
        for k, v in meta.items():
            if k != "general.architecture":  # the writer adds it
                _add(w, k, v)
        for n, s in shapes.items():
            block, size = g.GGML_QUANT_SIZES[types[n]]
            w.add_tensor_info(n, s, np.dtype(np.float32), int(np.prod(s)) // block * size, raw_dtype=types[n])
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        with torch.no_grad():
            for n in tqdm(shapes, desc=f"writing {target.name}", unit="tensor", disable=None if progress is None else not progress,
                          leave=False):
                w.write_tensor_data(encode_tensor(tensors.pop(n), types[n]))
        w.close()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target.absolute()
