"""Integrity of a checkpoint folder: every file's size and sha256, listed in zoo.yaml and
checked on load (sizes always, hashes on request), hashed in parallel threads."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .document import SPEC_FILE, CheckpointError


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
