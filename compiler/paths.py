"""Confinement: a file that a spec or a checkpoint names must lie inside its folder.

A name is relative, has no `..` part, and resolves (symlinks followed) to a path inside the
folder, so a spec's `extends:`, a checkpoint's tokenizer file, its manifest or its shard index
can never make zoo read (or, re-saving or pushing, copy) a file from elsewhere.
"""

from __future__ import annotations

import stat
from pathlib import Path, PurePosixPath
from typing import Any


def name_problem(name: Any) -> str | None:
    """Why `name`, as written, cannot name a file inside a folder (None when it can)."""
    if not isinstance(name, str) or not name or "\x00" in name or len(name) > 4096:
        return f"{str(name)[:80]!r} is not a file name"
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or Path(name).is_absolute():
        return f"{name!r} is an absolute path; a name inside the folder is expected"
    if ".." in pure.parts:
        return f"{name!r} climbs out of the folder (..)"
    return None


def escape_reason(folder: Path, name: Any, root: Path | None = None) -> str | None:
    """Why `name` does not name a file inside `folder` (None when it does); `root`, when given,
    is where symlinks may point (a Hub cache snapshot's files are links into the repo's blobs)."""
    why = name_problem(name)
    if why:
        return why
    base = Path(root if root is not None else folder).resolve()
    target = (Path(folder).resolve() / name).resolve()
    if target != base and base not in target.parents:
        return f"{name!r} resolves to {target}, outside {base} (a symlink?)"
    return None


def unsafe_entries(folder: Path, root: Path | None = None, limit: int = 10_000) -> list[str]:
    """What below `folder` zoo must not read: symlinks that point outside `root` (default: the
    folder itself) or in a loop, and entries that are not plain files or folders (a FIFO would
    block a read forever, a device would never end)."""
    base = Path(root if root is not None else folder).resolve()
    out = []
    for i, p in enumerate(Path(folder).rglob("*")):
        if i >= limit:
            out.append(f"more than {limit:,} entries")
            break
        rel = p.relative_to(folder)
        try:
            target = p.resolve(strict=False)
            st = p.stat()
        except (OSError, RuntimeError):
            out.append(f"{rel}: a broken or looping link" if p.is_symlink() else f"{rel}: unreadable")
            continue
        if p.is_symlink() and target != base and base not in target.parents:
            out.append(f"{rel} -> {target}")
        elif not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            out.append(f"{rel}: not a plain file (a FIFO, socket or device)")
    return out
