"""Moving tensors between safetensors files and a model built on the meta device.

Loading checks the whole key set and every shape against the model before anything is
materialized, reporting every problem at once; then tensors stream one at a time from the
memory-mapped file to their device and dtype, and are assigned (no second copy of the model).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .checkpoint import CheckpointError

INDEX_FILE = "model.safetensors.index.json"


@dataclass
class KeyReport:
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shape)

    def render(self, where: str) -> str:
        lines = [f"{where}: the checkpoint does not match the model"]
        if self.missing:
            lines.append(f"  missing ({len(self.missing)}): " + ", ".join(self.missing[:8]) + (" …" if len(self.missing) > 8 else ""))
        if self.unexpected:
            lines.append(f"  unexpected ({len(self.unexpected)}): " + ", ".join(self.unexpected[:8]) + (" …" if len(self.unexpected) > 8 else ""))
        for name, want, got in self.wrong_shape[:8]:
            lines.append(f"  wrong shape: {name}: model wants {list(want)}, file has {list(got)}")
        return "\n".join(lines)


def compare_keys(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]) -> KeyReport:
    rep = KeyReport(sorted(set(expected) - set(found)), sorted(set(found) - set(expected)))
    rep.wrong_shape = [(k, expected[k], found[k]) for k in sorted(set(expected) & set(found)) if tuple(expected[k]) != tuple(found[k])]
    return rep


def safetensors_files(folder: Path) -> dict[str, Path]:
    """tensor name → file, from the index when there is one."""
    folder = Path(folder)
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index}: not a safetensors index ({e})") from None
        out = {}
        for name, fname in weight_map.items():
            p = folder / fname
            if not p.is_file():
                raise CheckpointError(f"{index}: shard {fname} (holding {name}) is missing from {folder}")
            out[name] = p
        return out
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder}: no *.safetensors files")
    out = {}
    for f in files:
        for name in _header(f):
            out[name] = f
    return out


def _header(path: Path) -> dict[str, tuple[int, ...]]:
    """Names and shapes from a safetensors header, validated against the file's size."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            raw_len = fh.read(8)
            if len(raw_len) < 8:
                raise ValueError("shorter than its 8-byte header length")
            n = int.from_bytes(raw_len, "little")
            if n > size - 8:
                raise ValueError(f"header claims {n} bytes, file has {size - 8}")
            header = json.loads(fh.read(n))
        end = 0
        shapes = {}
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            shapes[name] = tuple(meta["shape"])
            end = max(end, meta["data_offsets"][1])
        if 8 + n + end > size:
            raise ValueError(f"truncated: tensors need {8 + n + end} bytes, file has {size}")
        return shapes
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors file ({e})") from None


def read_shapes(files: Mapping[str, Path]) -> dict[str, tuple[int, ...]]:
    headers = {p: _header(p) for p in set(files.values())}
    return {name: headers[p][name] for name, p in files.items() if name in headers[p]}


def load_into(model: nn.Module, tensors: Iterable[tuple[str, torch.Tensor]], device: torch.device | str,
              dtype: torch.dtype | None) -> None:
    """Assign streamed tensors to a meta model's parameters, one at a time."""
    params = dict(model.named_parameters())
    for name, t in tensors:
        p = params[name]
        value = t.to(device=device, dtype=dtype or t.dtype)
        mod_name, _, attr = name.rpartition(".")
        mod = model.get_submodule(mod_name) if mod_name else model
        setattr(mod, attr, nn.Parameter(value, requires_grad=p.requires_grad))
    left = [n for n, p in model.named_parameters() if p.is_meta]
    if left:
        raise CheckpointError(f"parameters left unloaded: {left[:5]}")


def stream_safetensors(files: Mapping[str, Path], names: Iterable[str]) -> Iterable[tuple[str, torch.Tensor]]:
    by_file: dict[Path, list[str]] = {}
    for n in names:
        by_file.setdefault(files[n], []).append(n)
    for path, keys in by_file.items():
        try:
            with safe_open(str(path), framework="pt") as fh:
                for k in keys:
                    yield k, fh.get_tensor(k)
        except (OSError, RuntimeError) as e:  # safetensors raises SafetensorError (a RuntimeError-like)
            raise CheckpointError(f"{path}: cannot read tensors ({e})") from None


def save_sharded(state: Mapping[str, torch.Tensor], folder: Path, max_shard_bytes: int = 5 * 2**30,
                 metadata: dict[str, str] | None = None) -> list[str]:
    """Write safetensors shards no bigger than `max_shard_bytes` (one tensor may exceed it)
    and, for more than one shard, the index."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in state.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t.detach().contiguous().cpu()
        size += nbytes
    names = ["model.safetensors"] if len(shards) == 1 else [
        f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    for fname, shard in zip(names, shards):
        save_file(shard, str(Path(folder) / fname), metadata={"format": "pt", **(metadata or {})})
        weight_map.update({k: fname for k in shard})
    if len(shards) > 1:
        total = sum(t.numel() * t.element_size() for t in state.values())
        (Path(folder) / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return names
