"""Atomic folder writes: everything goes into a hidden temporary folder beside the target,
which one rename puts in place; a killed save leaves only that folder, swept by the next."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .document import CheckpointError


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
