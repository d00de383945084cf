"""What a case observes besides its result: files opened outside a folder, warnings on load."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path
from typing import Iterator

from zoo import ZooError

from .builders import load_digest


@contextlib.contextmanager
def watch_opens(*forbidden: Path) -> Iterator[list[str]]:
    """Record every file Python opens under one of `forbidden` (an audit hook: the case runs in
    a forked child, so the hook never outlives it)."""
    roots = [str(Path(p).resolve()) for p in forbidden]
    seen: list[str] = []

    def hook(event: str, args: tuple) -> None:
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            try:
                p = os.path.realpath(os.fsdecode(args[0]))
            except Exception:  # noqa: BLE001
                return
            if any(p == r or p.startswith(r + os.sep) for r in roots):
                seen.append(p)

    sys.addaudithook(hook)
    yield seen


def load_watched(folder: Path, forbidden: Path) -> dict:
    """Loads `folder`; reports whether anything under `forbidden` was opened (even when the
    load then fails: reading outside the folder is the fault)."""
    with watch_opens(forbidden) as seen:
        try:
            load_digest(folder)
            result = "accepted"
        except ZooError as e:
            result = f"zoo: {e}"
    return {"result": result, "opened": seen}


def load_warnings(folder: Path) -> list[str]:
    """Loads `folder` and returns the UserWarnings zoo gave (a NaN/inf check must warn or refuse)."""
    import zoo

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        zoo.load(str(folder))
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
