"""Editors that mutate checkpoint folders the way an attacker would.

An edit that leaves zoo.yaml's fingerprint or manifest stale stops at the integrity check; the
attacker recomputes them, so these editors do too (unless told not to), and the mutation reaches
the validation behind them.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import struct
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from .builders import copy_folder

ST = "model.safetensors"
INDEX = "model.safetensors.index.json"

# ---------------------------------------------------------------------------------- zoo.yaml


def fingerprint_of(raw_spec: Any) -> str:
    try:
        from zoo.checkpoint import written_fingerprint

        return written_fingerprint(raw_spec)
    except Exception:  # noqa: BLE001 - the editor must not fail where the product would
        text = json.dumps(raw_spec, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def read_zoo_yaml(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "zoo.yaml").read_text())


def write_zoo_yaml(folder: Path, doc: Any) -> None:
    (folder / "zoo.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def refresh_manifest(folder: Path, doc: dict[str, Any]) -> None:
    """zoo.yaml's `files:` made to match the folder again (what an attacker would do)."""
    files = doc.get("files")
    if not isinstance(files, dict):
        return
    for name in list(files):
        p = folder / str(name)
        if p.is_file() and not p.is_symlink():
            files[name] = file_entry(p)


def edit_zoo_yaml(folder: Path, fn: Callable[[dict[str, Any]], Any], *, refingerprint: bool = True,
                  remanifest: bool = True) -> None:
    """Mutate zoo.yaml's document with `fn`; then, as an attacker would, make the fingerprint and
    the manifest agree with the result so the mutation reaches the validation behind them."""
    doc = read_zoo_yaml(folder)
    fn(doc)
    if remanifest and isinstance(doc, dict):
        refresh_manifest(folder, doc)
    if refingerprint and isinstance(doc, dict) and "spec" in doc:
        doc["fingerprint"] = fingerprint_of(doc["spec"])
    write_zoo_yaml(folder, doc)


def after_file_change(folder: Path) -> None:
    """A zoo folder whose files were edited: its manifest recomputed (so the edit is what is
    tested, not the size check)."""
    if (folder / "zoo.yaml").is_file():
        edit_zoo_yaml(folder, lambda d: None)


# ---------------------------------------------------------------------------------- JSON files


def edit_json(path: Path, fn: Callable[[Any], Any]) -> None:
    """Mutate a JSON file's data in place with `fn` (its return value is ignored)."""
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))  # NaN and Infinity as Python's json writes them


def edit_config(folder: Path, key: str, value: Any, *, delete: bool = False) -> None:
    """Set (or delete) one key of a transformers folder's config.json."""
    def fn(cfg: dict) -> None:
        if key in ("rope_theta", "rope_scaling"):  # transformers 4's keys: only read without rope_parameters
            cfg.pop("rope_parameters", None)
        if delete:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    edit_json(folder / "config.json", fn)


# ---------------------------------------------------------------------------------- safetensors


def read_safetensors(path: Path) -> tuple[dict[str, Any], bytes]:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write_safetensors(path: Path, header: Any, data: bytes, *, header_bytes: bytes | None = None,
                      length: int | None = None) -> None:
    text = header_bytes if header_bytes is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)


def largest_tensor(header: dict[str, Any]) -> str:
    return max((k for k in header if k != "__metadata__"),
               key=lambda k: header[k]["data_offsets"][1] - header[k]["data_offsets"][0])


def first_tensor(header: dict[str, Any]) -> str:
    return min((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])


def mutate_safetensors(src: Path, root: Path, fn: Callable[[dict, bytes], Any]) -> Path:
    """A copy of `src` (as root/case) whose safetensors header went through `fn(header, data)`;
    `fn` may return {"header", "data", "header_bytes", "length"} overrides."""
    dst = copy_folder(src, root / "case")
    header, data = read_safetensors(dst / ST)
    out = fn(header, data)
    if isinstance(out, dict):  # header bytes / length overrides
        write_safetensors(dst / ST, out.get("header", header), out.get("data", data),
                          header_bytes=out.get("header_bytes"), length=out.get("length"))
    else:
        write_safetensors(dst / ST, header, data)
    after_file_change(dst)
    return dst


def truncate_weights(folder: Path, cut: int) -> None:
    """model.safetensors cut short by `cut` bytes (the manifest made to agree)."""
    raw = (folder / ST).read_bytes()
    (folder / ST).write_bytes(raw[:max(0, len(raw) - cut)])
    after_file_change(folder)


def overwrite_header_bytes(folder: Path, flips: list[tuple[int, int]]) -> None:
    """Bytes of model.safetensors' length prefix and header replaced: (offset, byte) pairs."""
    raw = bytearray((folder / ST).read_bytes())
    for i, byte in flips:
        raw[i] = byte
    (folder / ST).write_bytes(bytes(raw))
    after_file_change(folder)


def header_end(folder: Path) -> int:
    """The length of model.safetensors' length prefix and header."""
    with open(folder / ST, "rb") as fh:
        return struct.unpack("<Q", fh.read(8))[0] + 8


# ---------------------------------------------------------------------------------- outside the folder


def point_tokenizer_outside(folder: Path, secret: Path, how: str) -> None:
    """The folder's tokenizer.json copied into `secret` (outside it), and the folder made to use
    that copy: by an absolute path in zoo.yaml, by `../secret/...`, or by a symlink (same
    bytes: the manifest agrees)."""
    secret.mkdir()
    shutil.copy(folder / "tokenizer.json", secret / "tokenizer.json")
    if how == "absolute":
        edit_zoo_yaml(folder, lambda d: d["spec"]["tokenizer"].__setitem__("file", str(secret / "tokenizer.json")))
    elif how == "dotdot":
        edit_zoo_yaml(folder, lambda d: d["spec"]["tokenizer"].__setitem__("file", "../secret/tokenizer.json"))
    else:
        (folder / "tokenizer.json").unlink()
        (folder / "tokenizer.json").symlink_to(secret / "tokenizer.json")


def move_weights_outside(folder: Path, outside: Path) -> None:
    """model.safetensors moved into `outside` and symlinked from the folder."""
    outside.mkdir()
    shutil.move(folder / ST, outside / ST)
    (folder / ST).symlink_to(outside / ST)


def write_pickle_payload(pth: Path, marker: Path, *, bare: bool) -> None:
    """A .pth whose unpickling would run `touch marker`: inside a state dict, or a bare pickle."""
    class Boom:
        def __reduce__(self) -> Any:
            return (os.system, (f"touch {marker}",))

    if bare:
        pth.write_bytes(pickle.dumps(Boom()))
    else:
        torch.save({"tok_embeddings.weight": torch.zeros(2), "x": Boom()}, pth)
