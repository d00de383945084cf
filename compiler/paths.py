"""Confinement: a file that a spec or a checkpoint names must lie inside its folder.

A name is relative, has no `..` part, and resolves (symlinks followed) to a path inside the
folder, so a spec's `extends:`, a checkpoint's tokenizer file, its manifest or its shard index
can never make zoo read (or, re-saving or pushing, copy) a file from elsewhere.
"""

from __future__ import annotations

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


def links_out(folder: Path, root: Path | None = None, limit: int = 10_000) -> list[str]:
    """The symlinks below `folder` that point outside `root` (default: the folder itself)."""
    base = Path(root if root is not None else folder).resolve()
    out = []
    for i, p in enumerate(Path(folder).rglob("*")):
        if i >= limit:
            break
        if p.is_symlink():
            target = p.resolve()
            if target != base and base not in target.parents:
                out.append(f"{p.relative_to(folder)} -> {target}")
    return out
