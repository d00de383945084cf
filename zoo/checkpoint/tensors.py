"""Moving tensors between safetensors files and a model built on the meta device.

Loading checks the whole key set and every shape before anything is materialized, reporting
every problem at once. Tensors are then views of a private (copy-on-write) memory map of the
file: when the device and dtype already match, the view *is* the parameter (zero copies, and the
pages count once); otherwise each tensor is converted and its mapped pages are dropped at once,
so the file never sits in memory beside the converted model. Headers are validated against the
file's size before any mapping, so a truncated or corrupt file is an error naming it, never a
crash or a silently short tensor.
"""

from __future__ import annotations

import json
import mmap
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import torch
from torch import nn

from ..compiler.paths import escape_reason
from ..runtime.memory import huge_page_empty
from .document import CheckpointError

INDEX_FILE = "model.safetensors.index.json"
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}


@dataclass
class KeyReport:
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shape)

    def render(self, where: str, limit: int = 20) -> str:
        lines = [f"{where}: the checkpoint does not match the model"]
        for label, names in (("missing", self.missing), ("unexpected", self.unexpected)):
            if names:
                lines.append(f"  {label} ({len(names)}): " + ", ".join(names[:limit]) + (" …" if len(names) > limit else ""))
        if self.wrong_shape:
            lines.append(f"  wrong shape ({len(self.wrong_shape)}):")
        for name, want, got in self.wrong_shape[:limit]:
            lines.append(f"    {name}: model wants {list(want)}, file has {list(got)}")
        return "\n".join(lines)


def compare_keys(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]) -> KeyReport:
    rep = KeyReport(sorted(set(expected) - set(found)), sorted(set(found) - set(expected)))
    rep.wrong_shape = [(k, expected[k], found[k]) for k in sorted(set(expected) & set(found)) if tuple(expected[k]) != tuple(found[k])]
    return rep


@dataclass(frozen=True)
class Entry:
    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int  # absolute byte offsets in the file
    end: int


def read_header(path: Path) -> dict[str, Entry]:
    """Tensor entries of a safetensors file, every offset and size checked against the file."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a plain file")
        size = st.st_size
        with open(path, "rb") as fh:
            raw_len = fh.read(8)
            if len(raw_len) < 8:
                raise ValueError("shorter than its 8-byte header length")
            n = int.from_bytes(raw_len, "little")
            if n > min(size - 8, 100 << 20):
                raise ValueError(f"header claims {n} bytes, file has {size - 8}")
            header = json.loads(fh.read(n))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        out, start, spans = {}, 8 + n, []
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            dtype = DTYPES.get(meta["dtype"])
            if dtype is None:
                raise ValueError(f"{name}: unknown dtype {meta['dtype']!r}")
            shape = tuple(int(s) for s in meta["shape"])
            b, e = (int(x) for x in meta["data_offsets"])
            numel = 1
            for s in shape:
                numel *= s
            if min(shape, default=0) < 0 or not 0 <= b <= e or e - b != numel * dtype.itemsize:
                raise ValueError(f"{name}: offsets {[b, e]} do not hold {meta['dtype']}{list(shape)}")
            if start + e > size:
                raise ValueError(f"truncated: {name} ends at byte {start + e}, the file has {size}")
            out[name] = Entry(dtype, shape, start + b, start + e)
            spans.append((b, e, name))
        spans.sort()
        for (_, e1, n1), (b2, _, n2) in zip(spans, spans[1:]):
            if b2 < e1:
                raise ValueError(f"tensors {n1} and {n2} overlap")
        return out
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:  # UnicodeDecodeError: a ValueError
        raise CheckpointError(f"{path}: corrupt safetensors file ({str(e)[:200] or type(e).__name__})") from None


def safetensors_files(folder: Path, index_name: str = INDEX_FILE, root: Path | None = None) -> dict[str, Path]:
    """tensor name → file, from the index when there is one (every shard it names must exist,
    inside the folder)."""
    folder = Path(folder)
    index = folder / index_name
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            assert isinstance(weight_map, dict)
        except (json.JSONDecodeError, KeyError, TypeError, AssertionError, UnicodeDecodeError, RecursionError) as e:
            raise CheckpointError(f"{index}: not a safetensors index ({type(e).__name__}: {str(e)[:200]})") from None
        for f in weight_map.values():
            why = escape_reason(folder, f, root)
            if why:
                raise CheckpointError(f"{index}: a shard name {why}")
        shards = {f: folder / f for f in set(weight_map.values())}
        missing = sorted(f for f, p in shards.items() if not p.is_file())
        if missing:
            raise CheckpointError(f"{index}: shard(s) {', '.join(missing)} named by the index are missing from {folder}")
        return {name: shards[fname] for name, fname in weight_map.items()}
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder}: no *.safetensors files")
    return {name: f for f in files for name in read_header(f)}


def read_shapes(files: Mapping[str, Path], headers: Mapping[Path, dict[str, Entry]] | None = None
                ) -> dict[str, tuple[int, ...]]:
    """Shapes of every tensor the map names; a name its shard does not hold is an error."""
    headers = headers or {p: read_header(p) for p in set(files.values())}
    absent = [f"{n} (in {p.name})" for n, p in files.items() if n not in headers[p]]
    if absent:
        raise CheckpointError(f"{next(iter(files.values())).parent}: the index names tensors its shards do not hold: "
                              + ", ".join(absent[:5]))
    return {name: headers[p][name].shape for name, p in files.items()}


class SafetensorsSource:
    """The tensors of a safetensors folder (index or glob), read through private memory maps."""

    def __init__(self, folder: Path, index_name: str = INDEX_FILE, root: Path | None = None):
        self.where = str(folder)
        self.files = safetensors_files(folder, index_name, root)
        self.headers = {p: read_header(p) for p in set(self.files.values())}
        self._maps: dict[Path, mmap.mmap] = {}
        read_shapes(self.files, self.headers)
        for p in self.headers:  # mapped now (nothing is read): the files stay these even if the folder is replaced
            self._map(p)

    def shapes(self, shard_dims: Mapping[str, int | None] | None = None) -> dict[str, tuple[int, ...]]:
        return {n: self.headers[p][n].shape for n, p in self.files.items()}

    def order_key(self, name: str) -> tuple[str, int]:
        p = self.files.get(name)
        return (p.name, self.headers[p][name].begin) if p is not None else ("", 0)

    def _map(self, path: Path) -> mmap.mmap:
        if path not in self._maps:
            try:
                with open(path, "rb") as fh:
                    self._maps[path] = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
            except (OSError, ValueError) as e:
                raise CheckpointError(f"{path}: cannot map ({e})") from None
        return self._maps[path]

    def get(self, name: str) -> torch.Tensor:
        path = self.files[name]
        e = self.headers[path][name]
        if e.end == e.begin:
            return torch.empty(e.shape, dtype=e.dtype)
        count = (e.end - e.begin) // e.dtype.itemsize
        return torch.frombuffer(self._map(path), dtype=e.dtype, count=count, offset=e.begin).view(e.shape)

    def release(self, name: str) -> None:
        """Drop the mapped pages of a tensor that was copied (safe: a private file mapping that
        nothing wrote to re-reads the file if touched again)."""
        path = self.files[name]
        mm = self._maps.get(path)
        if mm is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        e = self.headers[path][name]
        lo = -(-e.begin // mmap.PAGESIZE) * mmap.PAGESIZE
        hi = e.end // mmap.PAGESIZE * mmap.PAGESIZE
        if hi > lo:
            mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    def close(self) -> None:
        self._maps.clear()  # the maps live on while a zero-copy parameter still views them


class NonFiniteWeightsWarning(UserWarning):
    """A checkpoint's weights hold NaN or infinity (loaded anyway; `on_nonfinite="error"` refuses)."""


def parameter_slots(model: nn.Module) -> dict[str, tuple[nn.Module, str, bool]]:
    """name -> (owning module, attribute, requires_grad), found in one walk of the module tree."""
    return {(f"{mod_name}.{attr}" if mod_name else attr): (mod, attr, p.requires_grad)
            for mod_name, mod in model.named_modules() for attr, p in mod._parameters.items() if p is not None}


def assign(slot: tuple[nn.Module, str, bool], t: torch.Tensor, device: torch.device | str,
           dtype: torch.dtype | None) -> bool:
    """Make `t` (cast, moved) the parameter in `slot`; True when no copy was needed (zero-copy)."""
    mod, attr, requires_grad = slot
    want = dtype if dtype is not None and t.is_floating_point() else t.dtype
    if torch.device(device).type == "cpu" and (want != t.dtype or t.device.type != "cpu"):
        value = huge_page_empty(t.shape, want).copy_(t)  # a copy anyway: onto huge pages
    else:
        value = t.to(device=device, dtype=want)
    if not value.is_contiguous():
        value = value.contiguous()
    mod._parameters[attr] = nn.Parameter(value, requires_grad=requires_grad)  # replaces a registered parameter
    return value.data_ptr() == t.data_ptr()


def load_into(model: nn.Module, tensors: Iterable[tuple[str, torch.Tensor]], device: torch.device | str,
              dtype: torch.dtype | None) -> None:
    """Assign streamed (canonical name, tensor) pairs to a meta model's parameters, one at a time."""
    slots = parameter_slots(model)
    for name, t in tensors:
        assign(slots[name], t, device, dtype)
    check_loaded(model)


def check_loaded(model: nn.Module) -> None:
    left = [n for n, p in model.named_parameters() if p.is_meta]
    if left:
        raise CheckpointError(f"parameters left unloaded: {left[:5]}")


def write_safetensors(tensors: Mapping[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors' save_file, its failures (a full disk, a file too large) as OSErrors, which
    the atomic folder a save writes into turns into a CheckpointError."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        save_file(dict(tensors), str(path), metadata=metadata)
    except SafetensorError as e:
        raise OSError(f"{path.name}: {e}") from None


def save_sharded(state: Mapping[str, torch.Tensor], folder: Path, max_shard_bytes: int = 5 * 2**30,
                 metadata: dict[str, str] | None = None, progress: bool | None = None) -> list[str]:
    """Write safetensors shards no bigger than `max_shard_bytes` (one tensor may exceed it)
    under transformers' names (model.safetensors, or model-0000k-of-0000n + the index)."""
    from tqdm.auto import tqdm

    plan: list[list[str]] = [[]]
    size = 0
    for name, t in state.items():
        nbytes = t.numel() * t.element_size()
        if plan[-1] and size + nbytes > max_shard_bytes:
            plan.append([])
            size = 0
        plan[-1].append(name)
        size += nbytes
    names = ["model.safetensors"] if len(plan) == 1 else [
        f"model-{i + 1:05d}-of-{len(plan):05d}.safetensors" for i in range(len(plan))]
    weight_map = {}
    bar = tqdm(total=len(names), desc="writing shards", unit="shard", disable=None if progress is None else not progress,
               leave=False)
    for fname, keys in zip(names, plan):
        shard = {k: state[k].detach().contiguous().cpu() for k in keys}
        write_safetensors(shard, Path(folder) / fname, metadata={"format": "pt", **(metadata or {})})
        weight_map.update({k: fname for k in keys})
        bar.update()
    bar.close()
    if len(plan) > 1:
        total = sum(t.numel() * t.element_size() for t in state.values())
        meta = {"total_size": total, "total_parameters": sum(t.numel() for t in state.values())}
        (Path(folder) / INDEX_FILE).write_text(json.dumps({"metadata": meta, "weight_map": weight_map}, indent=2))
    return names


def parse_size(size: int | str) -> int:
    """Bytes from 5368709120, "5GB", "500MB", "2GiB"."""
    if isinstance(size, int):
        return size
    s = str(size).strip().upper()
    for unit, mult in (("GIB", 2**30), ("MIB", 2**20), ("KIB", 2**10), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3),
                       ("B", 1)):
        if s.endswith(unit):
            try:
                return int(float(s[: -len(unit)]) * mult)
            except ValueError:
                break
    try:
        return int(s)
    except ValueError:
        raise ValueError(f"max_shard_size: {size!r} is not a size (e.g. 5GB, 500MB, 1073741824)") from None
