"""Small atomic writes for the data tools: a temporary file in the same folder, then one rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from ..runtime.errors import UsageError


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


@contextlib.contextmanager
def output_folder(target: str | os.PathLike[str], overwrite: bool, marker: str) -> Iterator[Path]:
    """A temporary folder beside `target` that takes its place on success (a failed run leaves
    nothing). An existing `target` is replaced only with `overwrite` and only when it holds
    `marker` (a folder this tool wrote), so a user's own folder is never deleted."""
    target = Path(target).absolute()
    if target.exists():
        if not overwrite:
            raise UsageError(f"{target} exists (pass --overwrite to replace it)")
        if not (target / marker).is_file():
            raise UsageError(f"{target} exists and was not written by this command (no {marker}): not replacing it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.rename(target, old)
        os.rename(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
