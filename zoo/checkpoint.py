"""The zoo's own checkpoint folder and its integrity.

`zoo.yaml` holds the resolved spec (schema version, sha256 fingerprint), the tensor layout of
the folder (`layout:` a format name, or `canonical`) and a manifest of every other file with its
size and sha256, so a checkpoint always loads with the architecture it was trained with and a
damaged or tampered file is named, not loaded. Writes are atomic: everything goes into a hidden
temporary folder beside the target, which one rename puts in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from .compiler.errors import SpecError, ZooError
from .compiler.schema import SCHEMA_VERSION, ModelSpec

SPEC_FILE = "zoo.yaml"
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's safe loader: same documents, 10x faster
CANONICAL = "canonical"


class CheckpointError(ZooError, RuntimeError):
    """A checkpoint folder or file is missing, corrupt, or does not match its spec."""


@dataclass
class Document:
    """What zoo.yaml says about its folder."""

    spec: ModelSpec
    layout: str = CANONICAL
    files: dict[str, dict[str, Any]] = field(default_factory=dict)


def spec_document(spec: ModelSpec, layout: str = CANONICAL, files: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "fingerprint": spec.fingerprint(), "layout": layout}
    if files:
        doc["files"] = files
    doc["spec"] = spec.model_dump(mode="json")
    return doc


def read_document(folder: Path) -> Document:
    path = Path(folder) / SPEC_FILE
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: no {SPEC_FILE}; not a zoo checkpoint") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(doc, dict) or "spec" not in doc:
        raise CheckpointError(f"{path}: expected keys schema_version, fingerprint, spec")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise CheckpointError(f"{path}: schema_version {doc.get('schema_version')!r}; this zoo reads {SCHEMA_VERSION}")
    from pydantic import ValidationError

    from .compiler.pydantic_errors import problems_from_validation

    try:
        spec = ModelSpec.model_validate(doc["spec"])
    except ValidationError as e:
        raise SpecError(problems_from_validation(e, doc["spec"], {}, str(path)), source=str(path)) from None
    if doc.get("fingerprint") and doc["fingerprint"] != written_fingerprint(doc["spec"]):
        raise CheckpointError(f"{path}: fingerprint mismatch (file says {doc['fingerprint']}, the spec in it "
                              f"hashes to {written_fingerprint(doc['spec'])}): the spec was edited by hand")
    files = doc.get("files") or {}
    if not isinstance(files, dict):
        raise CheckpointError(f"{path}: files: expected a mapping of file -> {{size, sha256}}")
    return Document(spec, str(doc.get("layout") or CANONICAL), files)


def written_fingerprint(raw_spec: Any) -> str:
    """The fingerprint of the spec *as written* (ModelSpec.fingerprint of the spec that was saved).
    Hashing the raw mapping rather than the re-validated spec keeps old checkpoints loadable
    when the schema gains fields with defaults, while any hand edit still changes the hash."""
    text = json.dumps(raw_spec, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def read_spec(folder: Path) -> ModelSpec:
    return read_document(folder).spec


def write_spec(folder: Path, spec: ModelSpec, layout: str = CANONICAL, files: dict[str, Any] | None = None) -> None:
    text = "# written by zoo: the resolved spec this checkpoint was saved with, its tensor layout and files\n"
    text += yaml.safe_dump(spec_document(spec, layout, files), sort_keys=False)
    (Path(folder) / SPEC_FILE).write_text(text, encoding="utf-8")


# ------------------------------------------------------------------------------- integrity
def file_digests(path: Path, chunk: int = 8 << 20) -> tuple[str, str, int]:
    """(sha256, git blob sha1, size) in one read: the Hub names LFS blobs by the first, small
    files by the second."""
    size = path.stat().st_size
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            sha256.update(block)
            sha1.update(block)
    return sha256.hexdigest(), sha1.hexdigest(), size


def hash_files(paths: list[Path], workers: int = 4) -> dict[Path, tuple[str, str, int]]:
    with ThreadPoolExecutor(max(1, min(workers, len(paths)))) as pool:  # hashlib releases the GIL
        return dict(zip(paths, pool.map(file_digests, paths)))


def manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """size and sha256 of every file but zoo.yaml and the card (README.md is documentation,
    re-rendered when a folder is pushed to name its repo)."""
    folder = Path(folder)
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix()
                   not in (SPEC_FILE, "README.md"))
    digests = hash_files(paths)
    return {p.relative_to(folder).as_posix(): {"size": digests[p][2], "sha256": digests[p][0]} for p in paths}


def verify_files(folder: Path, files: dict[str, dict[str, Any]], checksums: bool) -> None:
    """Every file zoo.yaml lists is there with its size (and, with `checksums`, its sha256)."""
    folder = Path(folder)
    problems, to_hash = [], []
    for name, meta in files.items():
        p = folder / name
        if not p.is_file():
            problems.append(f"{p}: missing (zoo.yaml lists it)")
        elif p.stat().st_size != meta.get("size"):
            problems.append(f"{p}: {p.stat().st_size} bytes, zoo.yaml says {meta.get('size')} (truncated or replaced)")
        elif checksums and meta.get("sha256"):
            to_hash.append(p)
    for p, (sha, _, _) in hash_files(to_hash).items():
        want = files[p.relative_to(folder).as_posix()]["sha256"]
        if sha != want:
            problems.append(f"{p}: sha256 mismatch (zoo.yaml says {want[:16]}…, the file hashes to {sha[:16]}…)")
    if problems:
        raise CheckpointError("checkpoint integrity check failed:\n  " + "\n  ".join(problems))


# ------------------------------------------------------------------------------- atomic writes
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale(target: Path) -> None:
    """Remove temporary folders of saves into `target` whose process died (a killed save)."""
    for p in target.parent.glob(f".{target.name}.tmp-*"):
        try:
            pid = int(p.name[len(f".{target.name}.tmp-"):].split("-")[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)


def _usual_modes(folder: Path) -> None:
    """mkdtemp/mkstemp create 0700/0600; a saved checkpoint gets what the umask gives a new file."""
    umask = os.umask(0)
    os.umask(umask)
    for root, dirs, files in os.walk(folder):
        os.chmod(root, 0o777 & ~umask)
        for f in files:
            os.chmod(os.path.join(root, f), 0o666 & ~umask)


@contextmanager
def atomic_folder(target: Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success it replaces `target` in one rename.
    A save killed midway leaves only the hidden temporary folder, swept by the next save."""
    target = Path(target).absolute()
    if target.exists() and not overwrite:
        raise CheckpointError(f"{target} exists (pass overwrite=True)")
    target.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    try:
        yield tmp
        _usual_modes(tmp)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save(model: Any, path: str | Path, *, max_shard_size: int | str = 5 * 2**30, overwrite: bool = True,
         layout: str | None = None, repo_id: str | None = None, progress: bool | None = None) -> Path:
    """Write `model` as a checkpoint folder that both zoo and transformers load.

    Design: when transformers has the family (`hf_config.hf_unsupported(spec)` is None), the
    tensors are written under *transformers' names* through the very key map zoo imports with
    (`specs/formats/hf-llama.yaml`), beside a `config.json`; `zoo.yaml` records `layout:
    hf-llama`. One set of tensors then serves both libraries: no duplicate weights, no second
    export step, and the same code path is exercised by every HF import. Canonical names would
    need transformers to learn the zoo's names (it cannot) or a second copy of the weights.
    Specs transformers cannot run are saved under canonical names (`layout: canonical`).

    Files: zoo.yaml (written last, listing every other file's size and sha256), model*.safetensors
    (+ index when sharded, shards of at most `max_shard_size` bytes or "500MB"), config.json and
    generation_config.json, the tokenizer, README.md (model card). All written atomically.
    """
    from .formats.export import write_checkpoint_files

    target = Path(path)
    with atomic_folder(target, overwrite) as tmp:
        layout = write_checkpoint_files(model, tmp, layout=layout, max_shard_size=parse_size(max_shard_size),
                                        repo_id=repo_id, progress=progress)
        write_spec(tmp, model.spec, layout, manifest(tmp))
    return target.absolute()


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
