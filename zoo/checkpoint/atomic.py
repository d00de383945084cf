"""Folder writes that never lose data.

A save writes into a hidden temporary folder beside the target, then puts it in place:

- it replaces only a folder it can prove is a checkpoint (every file listed in its zoo.yaml,
  or every file one of the checkpoint layouts holds); anything else is refused, naming the
  files that would have been lost, and so is the current directory;
- the old and new folders are swapped in one step (Linux `renameat2(RENAME_EXCHANGE)`), so
  there is no moment when neither exists; the old one is removed after;
- the swap holds an exclusive lock on the target's parent folder (flock; no lock file is left
  behind): concurrent saves to one folder are serialized (the last one wins, whole), and loads,
  which hold the lock shared while they open a folder's files, see one version or the other,
  never a mix;
- a save killed midway leaves its temporary folder, which the next save into that target
  sweeps (once its process is gone); the previous checkpoint is untouched until the swap.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .document import SPEC_FILE, CheckpointError, load_document

#: files the checkpoint layouts hold (transformers, Meta, Mistral, zoo): a folder of only these
#: (or only what its zoo.yaml lists) may be replaced
CHECKPOINT_FILES = re.compile(r"(.+\.safetensors|.+\.safetensors\.index\.json|consolidated\.\d+\.pth|"
                              r"(generation_)?config\.json|params\.json|tokenizer(_config)?\.(model|json)|"
                              r"special_tokens_map\.json|tekken\.json|README\.md|" + re.escape(SPEC_FILE) + r")")
WEIGHT_FILES = re.compile(r".+\.safetensors|consolidated\.\d+\.pth")
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_LIMIT = 10_000  # entries looked at when judging a folder


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale(target: Path) -> None:
    """Remove what saves into `target` left when killed: their temporary folders (and the old
    protocol's `.NAME.old-PID`), once the process that made them is gone."""
    for p in target.parent.glob(f".{target.name}.*-*"):
        m = re.fullmatch(re.escape(f".{target.name}.") + r"(tmp|old)-(\d+)(-.*)?", p.name)
        if m and p.is_dir() and int(m.group(2)) != os.getpid() and not _pid_alive(int(m.group(2))):
            shutil.rmtree(p, ignore_errors=True)


def _usual_modes(folder: Path) -> None:
    """mkdtemp/mkstemp create 0700/0600; a saved checkpoint gets what the umask gives a new file."""
    umask = os.umask(0)
    os.umask(umask)
    for root, dirs, files in os.walk(folder):
        os.chmod(root, 0o777 & ~umask)
        for f in files:
            os.chmod(os.path.join(root, f), 0o666 & ~umask)


def replace_problem(target: Path) -> str | None:
    """Why saving over `target` could lose something (None when it cannot: `target` is absent,
    empty, or a checkpoint folder every file of which belongs to the checkpoint)."""
    target = Path(target).absolute()
    if not target.exists() and not target.is_symlink():
        return None
    if target.is_symlink() or not target.is_dir():
        return f"{target} exists and is not a folder"
    here = Path.cwd().resolve()
    if target.resolve() == here or target.resolve() in here.parents:
        return f"{target} is the current directory (or holds it); save into a new folder"
    files = []
    for i, p in enumerate(target.rglob("*")):
        if i >= _LIMIT:
            return f"{target} holds more than {_LIMIT:,} entries; it is not a checkpoint folder"
        if not p.is_dir() or p.is_symlink():
            files.append(p.relative_to(target).as_posix())
    if (target / SPEC_FILE).is_file():
        try:
            listed = set(load_document(target).get("files") or {})
        except CheckpointError:
            listed = set()
        foreign = [f for f in files if f not in listed and f not in (SPEC_FILE, "README.md")]
    else:
        foreign = [f for f in files if "/" in f or not CHECKPOINT_FILES.fullmatch(f)]
        if files and not foreign and not any(WEIGHT_FILES.fullmatch(f) for f in files):
            foreign = files  # checkpoint-like names but no weights: a user's config.json and notes
    if foreign:
        shown = ", ".join(sorted(foreign)[:6]) + (f" and {len(foreign) - 6} more" if len(foreign) > 6 else "")
        return (f"{target} holds files that are not part of a checkpoint ({shown}); zoo replaces only a checkpoint "
                f"folder: move them, or save elsewhere")
    return None


@contextmanager
def folder_lock(target: Path, shared: bool = False) -> Iterator[None]:
    """The save lock of `target`: a flock on its parent folder, exclusive for a swap (saves of
    other folders there wait for that moment only), shared while a load opens the folder's
    files. Where the parent cannot be opened, a shared request goes unlocked."""
    parent = Path(target).absolute().parent
    try:
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        if shared:
            yield
            return
        raise CheckpointError(f"{parent}: cannot open the folder to lock it for the save") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step; False where the system cannot (not Linux, old glibc, a
    filesystem without RENAME_EXCHANGE)."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextmanager
def atomic_folder(target: Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success it takes `target`'s place (see the
    module docstring). With `overwrite` False an existing target is an error; with it True, only
    a checkpoint folder is replaced."""
    try:
        target = Path(target).absolute()
        if target.exists() or target.is_symlink():
            if not overwrite:
                raise CheckpointError(f"{target} exists (pass overwrite=True, or --overwrite, to replace it)")
            why = replace_problem(target)
            if why:
                raise CheckpointError(f"will not save: {why}")
        target.parent.mkdir(parents=True, exist_ok=True)
        _sweep_stale(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    except (OSError, ValueError) as e:  # a NUL byte, a name too long, a file where a folder should be …
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"cannot save to {str(target)[:300]}: {type(e).__name__}: {str(e)[:200]}") from None
    try:
        yield tmp
        _usual_modes(tmp)
        with folder_lock(target):
            if target.exists() or target.is_symlink():  # checked again: another process may have saved here
                if not overwrite:
                    raise CheckpointError(f"{target} was created while saving (pass overwrite=True to replace it)")
                why = replace_problem(target)
                if why:
                    raise CheckpointError(f"will not save: {why}")
                if not _exchange(tmp, target):  # two renames; the lock keeps zoo's loads out of the gap
                    old = tmp.with_name(tmp.name + "-old")
                    os.rename(target, old)
                    try:
                        os.rename(tmp, target)
                    except BaseException:
                        os.rename(old, target)
                        raise
                    shutil.rmtree(tmp, ignore_errors=True)
                    tmp = old
            else:
                os.rename(tmp, target)
                return
        shutil.rmtree(tmp, ignore_errors=True)  # the previous checkpoint, now at the temporary name
    except OSError as e:  # a full disk, a file too large, a permission: nothing was replaced
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"could not write {target}: {type(e).__name__}: {str(e)[:200]} (the previous "
                              "contents, if any, are untouched)") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
