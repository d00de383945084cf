"""Faults while saving: a save killed at its n-th step, concurrent saves to one folder, loads
during overwriting saves, a full disk, and the checks that a save lost nothing (previous
checkpoint, the user's files). Checks raise isolation.ContractViolation where the product broke
the contract silently."""

from __future__ import annotations

import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

import zoo
from zoo import ZooError

from .builders import digest
from .isolation import violate


def load_or_error(folder: Path) -> str:
    """The digest of what `folder` loads as, or `error: ...` when the load is a ZooError."""
    try:
        return digest(zoo.load(str(folder)))
    except ZooError as e:
        return f"error: {str(e).splitlines()[0][:200]}"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_files(folder: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)


def user_workdir(root: Path) -> Path:
    """root/work holding someone's files (paper.md, sub/data.csv): a save must never wipe them."""
    home = root / "work"
    (home / "sub").mkdir(parents=True)
    (home / "paper.md").write_text("months of work")
    (home / "sub" / "data.csv").write_text("1,2,3")
    return home


def fill_disk_at(limit: int) -> None:
    """This process's files can grow to `limit` bytes: a write past it fails with EFBIG (instead
    of the SIGXFSZ that would kill the process), as on a full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


# ---------------------------------------------------------------------------------- killed saves


def _profile_kill_after(n: int) -> None:
    """SIGKILL this process at its n-th profiled event (a Python or C call or return)."""
    count = [0]

    def prof(frame: Any, event: str, arg: Any) -> None:
        count[0] += 1
        if count[0] >= n:
            os.kill(os.getpid(), signal.SIGKILL)

    sys.setprofile(prof)


def save_killed_at(model: Any, target: Path, n: int | None) -> str:
    """Save `model` to `target` in a child process killed at its n-th profiled event (None:
    count the events of a whole save instead). 'killed', 'finished' or the count."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            if n is None:
                count = [0]
                sys.setprofile(lambda f, e, a: count.__setitem__(0, count[0] + 1))
                model.save(target)
                sys.setprofile(None)
                os.write(w, str(count[0]).encode())
            else:
                _profile_kill_after(n)
                model.save(target)
                sys.setprofile(None)
        except BaseException:  # noqa: BLE001
            code = 3
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    while chunk := os.read(r, 100):
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if n is None:
        return data.decode()
    if os.WIFSIGNALED(status):
        return "killed"
    return "finished" if os.waitstatus_to_exitcode(status) == 0 else "failed"


def killed_save_check(models: dict, root: Path, n: int, fresh: bool, total: int | None = None) -> str:
    """Model b saved to root/ckpt (over model a's checkpoint unless `fresh`) and killed at its
    n-th event; then the contract: the folder holds a whole version (the previous one, or none
    when fresh), the next save sweeps what the killed one left and takes. With `total` (the
    events of a whole save), a save killed before half of them must not show the new weights.
    Returns how the killed save ended."""
    target = root / "ckpt"
    if not fresh:
        models["a"].save(target)
    how = save_killed_at(models["b"], target, n)
    after = load_or_error(target) if target.exists() else None
    if fresh:
        if after is not None and after != models["db"]:
            violate(f"a fresh save killed at event {n} ({how}) left a folder that loads as: {after}")
    elif after not in (models["da"], models["db"]):
        violate(f"a save killed at event {n} ({how}) lost the previous checkpoint: {after}")
    elif total and how == "killed" and after != models["da"] and n <= 0.5 * total:
        violate(f"a save killed at event {n}/{total} already shows the new weights")
    models["a"].save(target)  # the next save sweeps what the killed one left
    if load_or_error(target) != models["da"]:
        violate(f"the save after one killed at event {n} did not take")
    left = [p.name for p in root.iterdir() if p.name.startswith(".")]
    if left:
        violate(f"left behind after the next save: {left}")
    return how


# ---------------------------------------------------------------------------------- concurrency


def _writer(model: Any, target: Path, go: int, report: int) -> None:
    """A child that waits for `go`, saves, and writes ok / zoo:<msg> / other:<msg> to `report`."""
    os.read(go, 1)
    try:
        model.save(target)
        msg = "ok"
    except ZooError as e:
        msg = f"zoo:{str(e)[:300]}"
    except BaseException as e:  # noqa: BLE001
        msg = f"other:{type(e).__name__}: {str(e)[:300]}"
    os.write(report, msg.encode())


def concurrent_saves(models: dict, target: Path, n: int = 2, stagger: float = 0.0) -> list[str]:
    go_r, go_w = os.pipe()
    reports, pids = [], []
    for i in range(n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                _writer(models["ab"[i % 2]], target, go_r, w)
            finally:
                os._exit(0)
        os.close(w)
        reports.append(r)
        pids.append(pid)
    for _ in range(n):
        os.write(go_w, b"x")
        if stagger:
            time.sleep(stagger)
    out = []
    for pid, r in zip(pids, reports):
        os.waitpid(pid, 0)
        data = b""
        while chunk := os.read(r, 4096):
            data += chunk
        os.close(r)
        out.append(data.decode() or "crashed")
    return out


def concurrent_saves_check(models: dict, target: Path, n: int, stagger: float, need_one: bool = True) -> list[str]:
    """`n` concurrent saves of models a and b to `target`; then the contract: each finished or
    got a ZooError (anything else: a RuntimeError), at least one finished (with `need_one`),
    and the folder holds one whole version."""
    res = concurrent_saves(models, target, n, stagger)
    bad = [r for r in res if not (r == "ok" or r.startswith("zoo:"))]
    if bad:
        raise RuntimeError(f"a concurrent save ended with {bad[0][:300]}")
    if need_one and not any(r == "ok" for r in res):
        violate(f"none of {n} concurrent saves finished: {res}")
    after = load_or_error(target)
    if after not in (models["da"], models["db"]):
        violate(f"after {n} concurrent saves the folder loads as {after}")
    return res


def loads_during_saves(models: dict, target: Path, seconds: float) -> dict[str, Any]:
    """A writer process saving models a and b alternately over `target` for `seconds`, this
    process loading `target` meanwhile: counts of each version seen, and every failure (a load
    that raised a ZooError or returned weights of neither version; a save that failed)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        msg = b""
        try:
            os.close(r)
            end = time.monotonic() + seconds
            i = 0
            while time.monotonic() < end:
                models["ab"[i % 2]].save(target)
                i += 1
        except BaseException as e:  # noqa: BLE001
            msg = f"the writer's save failed: {type(e).__name__}: {str(e)[:200]}".encode()
        finally:
            os.write(w, msg)
            os._exit(0)
    os.close(w)
    seen: dict[str, Any] = {"a": 0, "b": 0, "failures": []}
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            try:
                d = digest(zoo.load(str(target)))
                key = "a" if d == models["da"] else "b" if d == models["db"] else None
                if key:
                    seen[key] += 1
                else:
                    seen["failures"].append("a load returned weights of neither version")
            except ZooError as e:
                seen["failures"].append(f"a load failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    finally:
        os.waitpid(pid, 0)
        data = b""
        while chunk := os.read(r, 4096):
            data += chunk
        os.close(r)
        if data:
            seen["failures"].append(data.decode())
    return seen


def save_loaded_over_itself(target: Path) -> list[str]:
    """A model loaded from `target` (its tensors map the folder's files) saved over it: the
    model's digest and the folder's afterwards."""
    m = zoo.load(str(target))
    m.save(target)
    return [digest(m), load_or_error(target)]


def overwrite_under_loaded(target: Path, other: Any) -> str:
    """`other` saved over the folder a loaded model maps: the loaded model's digest afterwards."""
    m = zoo.load(str(target))
    other.save(target)
    return digest(m)
