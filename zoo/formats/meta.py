"""Meta's consolidated checkpoints: `consolidated.NN.pth` shards + `params.json`.

`.pth` files are pickles, so they are opened only with `torch.load(weights_only=True, mmap=True)`:
the restricted unpickler builds tensors and plain containers and refuses anything else, and the
tensors are views of a private memory map (nothing is read until used). Model-parallel shards
are merged per tensor, on the dim the format's key map names (`shard_dim`), as each tensor is
loaded, so the merged checkpoint never exists in memory beside the model.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from ..checkpoint import CheckpointError
from ..compiler.schema import (
    Attention,
    Decoder,
    ModelSpec,
    MultiTokenHead,
    NextTokenHead,
    RMSNorm,
    Rope,
    SwiGLU,
    TokenizerSpec,
)
from .transforms import READ_ERRORS, FormatError, unreadable

PARAMS_FILE = "params.json"
_SHARD = re.compile(r"consolidated\.(\d+)\.pth")


def shard_files(folder: Path) -> list[Path]:
    """consolidated.00.pth … in order; a gap in the numbering is an error naming the lost shard."""
    found = {int(m.group(1)): p for p in Path(folder).iterdir() if (m := _SHARD.fullmatch(p.name))}
    if not found:
        raise CheckpointError(f"{folder}: no consolidated.*.pth files")
    missing = [f"consolidated.{i:02d}.pth" for i in range(max(found) + 1) if i not in found]
    if missing:
        raise CheckpointError(f"{folder}: model-parallel shard(s) {', '.join(missing)} missing "
                              f"(found {', '.join(p.name for _, p in sorted(found.items()))})")
    return [found[i] for i in sorted(found)]


def _load_pth(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: refused: the pickle wants more than tensors ({e}); "
                              "zoo never executes pickled code") from None
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated .pth file ({e})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a flat {{name: tensor}} state dict")
    return state


_libc = None


def drop_pages(t: torch.Tensor) -> None:
    """Give back the resident pages of a tensor that lives in a private file mapping (those of
    torch.load(mmap=True)); touched again, they are re-read from the file."""
    global _libc
    if t.device.type != "cpu" or not hasattr(mmap, "MADV_DONTNEED"):
        return
    start = t.data_ptr()
    end = start + t.numel() * t.element_size()
    lo, hi = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE, end // mmap.PAGESIZE * mmap.PAGESIZE
    if hi > lo:
        _libc = _libc or ctypes.CDLL(None, use_errno=True)
        _libc.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), mmap.MADV_DONTNEED)


class MetaSource:
    """The merged view of consolidated.*.pth shards: shapes first (nothing read), then tensors."""

    def __init__(self, folder: Path):
        self.where = str(folder)
        self.paths = shard_files(folder)
        self.shards = [_load_pth(p) for p in self.paths]
        self.shard_dims: dict[str, int | None] = {}

    def raw_shape(self, name: str) -> tuple[int, ...] | None:
        """A tensor's shape in the first shard (before any merge)."""
        t = self.shards[0].get(name)
        return None if t is None else tuple(t.shape)

    def _merged_shapes(self) -> dict[str, tuple[int, ...]]:
        out: dict[str, tuple[int, ...]] = {}
        names = sorted(set().union(*self.shards))
        problems = []
        for n in names:
            where = [i for i, s in enumerate(self.shards) if n in s]
            if len(where) != len(self.shards):
                problems.append(f"{n} is only in {', '.join(self.paths[i].name for i in where)}")
                continue
            shapes = [tuple(s[n].shape) for s in self.shards]
            d = self.shard_dims.get(n)
            if d is None or len(shapes) == 1:
                if len(set(shapes)) > 1:
                    problems.append(f"{n} should be the same in every shard, shapes differ: {shapes}")
                out[n] = shapes[0]
                continue
            rest = {s[:d] + s[d + 1:] for s in shapes}
            if len(rest) > 1 or any(len(s) <= d for s in shapes):
                problems.append(f"{n}: shards do not concatenate on dim {d}: {shapes}")
                continue
            out[n] = shapes[0][:d] + (sum(s[d] for s in shapes),) + shapes[0][d + 1:]
        if problems:
            raise CheckpointError(f"{self.where}: the model-parallel shards do not fit together:\n  " + "\n  ".join(problems))
        return out

    def shapes(self, shard_dims: Mapping[str, int | None] | None = None) -> dict[str, tuple[int, ...]]:
        """Merged shapes, shards concatenated on the dims the bound key map gives."""
        self.shard_dims = dict(shard_dims or {})
        return self._merged_shapes()

    def order_key(self, name: str) -> tuple[str, int]:
        return ("", 0)

    def get(self, name: str) -> torch.Tensor:
        d = self.shard_dims.get(name)
        if d is None or len(self.shards) == 1:
            return self.shards[0][name]
        return torch.cat([s[name] for s in self.shards], d)

    def release(self, name: str) -> None:
        for s in self.shards:
            if name in s:
                drop_pages(s[name])

    def close(self) -> None:
        self.shards = []


def read_params(folder: Path) -> dict[str, Any]:
    path = Path(folder) / PARAMS_FILE
    try:
        params = json.loads(path.read_text())
        assert isinstance(params, dict)
        return params
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: no {PARAMS_FILE} beside the consolidated.*.pth files") from None
    except (OSError, ValueError, AssertionError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError: ValueErrors
        raise CheckpointError(f"{path}: not a params.json ({type(e).__name__}: {str(e)[:200]})") from None


def spec_from_params(params: dict[str, Any], name: str, vocab_size: int, tokenizer_file: str | None) -> ModelSpec:
    """A spec from Meta's params.json. `vocab_size` is the embedding's (Llama 2 writes -1).
    The context length is not in the checkpoint: `max_seq_len` if given, else 4096."""
    try:
        att = Attention(n_heads=params["n_heads"], n_kv_heads=params.get("n_kv_heads"),
                        rope=Rope(theta=params.get("rope_theta", 10000.0)))
        ffn = SwiGLU(multiple_of=params.get("multiple_of", 256), dim_multiplier=params.get("ffn_dim_multiplier"))
        n_future = params.get("n_future_tokens") or 1
        # facebook/multi-token-prediction: n_layers counts trunk + heads (layers + extra_heads)
        heads = NextTokenHead() if n_future == 1 else MultiTokenHead(n_future=n_future)
        arch = Decoder(dim=params["dim"], n_layers=params["n_layers"], vocab_size=vocab_size,
                       max_seq_len=params.get("max_seq_len", 4096), attention=att, ffn=ffn,
                       norm=RMSNorm(eps=params.get("norm_eps", 1e-5)), heads=heads)
        tok = TokenizerSpec(kind="sentencepiece", file=tokenizer_file) if tokenizer_file else None
        return ModelSpec(name=name, family="llama", description=f"imported from Meta consolidated weights ({name})",
                         arch=arch, tokenizer=tok)
    except READ_ERRORS as e:
        raise unreadable(f"params.json of {name}: cannot read it", e) from None


def _ffn_rule(dim: int, hidden: int, multiple_of: int | None, mult: float | None) -> bool:
    if multiple_of is None:
        return False
    h = int(2 * 4 * dim / 3)
    if mult is not None:
        h = int(mult * h)
    return multiple_of * ((h + multiple_of - 1) // multiple_of) == hidden


def params_from_spec(spec: ModelSpec) -> dict[str, Any]:
    """params.json for a spec Meta's reference code can run (FormatError naming what it cannot)."""
    a = spec.arch
    if a is not a.language_model():
        raise FormatError(f"{spec.name}: Meta's format holds decoders only, not {a.kind_name} models")
    blk = a.block(0)
    att, ffn = blk.attention, blk.ffn
    why = None
    if a.layers or a.tie_embeddings:
        why = "per-layer overrides or tied embeddings"
    elif att.head_dim * att.n_heads != a.dim or att.qkv_bias or att.o_bias or att.sliding_window:
        why = "head_dim != dim/n_heads, attention biases or a sliding window"
    elif att.rope is None or att.rope.scaling is not None:
        why = "RoPE scaling (or no RoPE)"
    elif ffn.kind != "swiglu" or ffn.bias or blk.norm.kind != "rmsnorm":
        why = "an FFN other than bias-free SwiGLU, or a norm other than RMSNorm"
    if why:
        raise FormatError(f"{spec.name}: Meta's format cannot express {why}")
    out: dict[str, Any] = {"dim": a.dim, "n_layers": a.n_layers, "n_heads": att.n_heads}
    if att.n_kv_heads != att.n_heads:
        out["n_kv_heads"] = att.n_kv_heads
    out["vocab_size"] = a.vocab_size
    hidden = ffn.hidden_dim
    if _ffn_rule(a.dim, hidden, ffn.multiple_of, ffn.dim_multiplier):
        out["multiple_of"] = ffn.multiple_of
        if ffn.dim_multiplier is not None:
            out["ffn_dim_multiplier"] = ffn.dim_multiplier
    elif _ffn_rule(a.dim, hidden, 256, None):
        out["multiple_of"] = 256
    else:  # any size: round up to a multiple of itself, from a multiplier that lands just below it
        out["multiple_of"] = hidden
        out["ffn_dim_multiplier"] = hidden / int(2 * 4 * a.dim / 3)
        assert _ffn_rule(a.dim, hidden, hidden, out["ffn_dim_multiplier"])
    out["norm_eps"] = blk.norm.eps
    out["rope_theta"] = att.rope.theta
    out["max_seq_len"] = a.max_seq_len
    if a.heads.head_blocks:  # multi-token prediction's extra heads
        out["n_future_tokens"] = a.heads.head_blocks
    return out


def write_meta(external: Mapping[str, torch.Tensor], shard_dims: Mapping[str, int | None], params: dict[str, Any],
               folder: Path, shards: int = 1) -> list[str]:
    """consolidated.NN.pth (+ params.json): tensors with a shard_dim are cut in `shards` equal
    pieces the Meta way, the others copied into every shard."""
    names = []
    for k in range(shards):
        part = {}
        for name, t in external.items():
            d = shard_dims.get(name)
            if d is not None and shards > 1:
                if t.shape[d] % shards:
                    raise FormatError(f"{name}: dim {d} ({t.shape[d]}) does not split into {shards} shards")
                t = t.chunk(shards, d)[k]
            t = t.detach().cpu().contiguous()
            if t.untyped_storage().nbytes() != t.numel() * t.element_size():
                t = t.clone()  # torch.save writes a view's whole storage
            part[name] = t
        fname = f"consolidated.{k:02d}.pth"
        torch.save(part, Path(folder) / fname)
        names.append(fname)
    (Path(folder) / PARAMS_FILE).write_text(json.dumps(params, indent=2))
    return names
