"""NaN and infinity in weights: checked as they load, once per version of a file.

Every parameter is checked as it lands (one float32 reduction over it, an exact check only when
that overflows). A weight that was copied (cast, moved) is always checked, where it landed; a
weight that *is* the mapped file (zero-copy) is skipped when that file, as it is now (path,
inode, size, modification time), was found all-finite by an earlier load: the record lives in
`$ZOO_CACHE/finite/`. So the first load of a checkpoint reads every byte once more, and later
loads of the same files cost nothing; a file replaced by a save is a new version.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch


def zoo_cache() -> Path:
    """zoo's own cache folder: $ZOO_CACHE, else $XDG_CACHE_HOME/zoo, else ~/.cache/zoo."""
    root = os.environ.get("ZOO_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                      os.path.expanduser("~/.cache"), "zoo")
    return Path(root)


def all_finite(t: torch.Tensor) -> bool:
    """No NaN or infinity in `t`: one float32 sum (NaN and inf survive it), and an exact check
    only when the sum itself overflows."""
    if not t.is_floating_point() or t.numel() == 0:
        return True
    return bool(torch.isfinite(t.sum(dtype=torch.float32))) or bool(torch.isfinite(t).all())


def _record(path: Path) -> Path | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = f"{os.path.realpath(path)}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}"
    return zoo_cache() / "finite" / hashlib.sha256(key.encode()).hexdigest()


def known_finite(path: Path) -> bool:
    """An earlier load found every tensor of this version of `path` finite."""
    rec = _record(path)
    return rec is not None and rec.is_file()


def remember_finite(path: Path) -> None:
    rec = _record(path)
    if rec is None:
        return
    try:
        rec.parent.mkdir(parents=True, exist_ok=True)
        rec.touch()
    except OSError:  # a read-only cache: check again next time
        pass
