"""Run a Python program in a child process with limits, and always clean up after it.

    from zoo import sandbox
    r = sandbox.run("print(sum(range(10)))", timeout=5)
    r.status, r.stdout        # ('passed', '45\\n')

What each run gets (docs/sandbox.md says what it does NOT get; it is not a container):

- its own process, started as the leader of a new session and process group, with a fresh
  temporary directory as its working directory (removed afterwards) and a small environment
  (no PYTHON* variables; `-I` isolated mode: no user site-packages, the script's folder first
  on sys.path);
- kernel resource limits set in the child before the program runs (soft = hard, so the
  program cannot raise them): CPU seconds (RLIMIT_CPU: SIGXCPU, then SIGKILL a second later),
  address space (RLIMIT_AS: allocations fail with MemoryError), size of any file it writes
  (RLIMIT_FSIZE: the write fails with EFBIG), and processes (RLIMIT_NPROC, which Linux counts
  per *user*, over all of that user's processes and threads, and does not apply to root);
- where a cgroup `pids` controller is writable (v1 `/sys/fs/cgroup/pids` or a v2 hierarchy
  with `pids` enabled, as root in most containers), a cgroup of its own: `pids.max` bounds the
  processes of this run alone (what RLIMIT_NPROC cannot do for root), and the cgroup's member
  list finds every descendant, including one that left the process group with setsid();
- a wall-clock timeout and a cap on stdout+stderr bytes (read in chunks as they come; past
  the cap the run is killed);
- at the end, whether it passed, failed, timed out or was cut off: SIGKILL to its process
  group, to every process in its cgroup, and to every process of the same user whose
  environment carries this run's marker variable (catches a child that called setsid() when
  there is no cgroup, unless it also replaced its environment).

A run never raises for what the program does; `Result.status` says how it ended.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ..runtime.errors import UsageError

MARKER = "ZOO_SANDBOX_RUN"
_MiB = 1 << 20

#: the child's first code: join the cgroup, set the limits, then run the program as __main__
_BOOT = r"""
import json, os, resource, runpy, sys
cfg = json.loads(sys.argv[1])
if cfg["cgroup"]:
    with open(os.path.join(cfg["cgroup"], "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
for name, value in cfg["limits"].items():
    soft, hard = value
    try:
        resource.setrlimit(getattr(resource, name), (soft, hard))
    except (ValueError, OSError):
        pass
del cfg, json, resource
sys.argv = ["main.py"]
sys.path.insert(0, os.getcwd())
runpy.run_path("main.py", run_name="__main__")
"""


@dataclass
class Limits:
    """What one run may use. None switches a limit off."""

    timeout: float | None = 10.0  #: wall-clock seconds
    cpu_seconds: int | None = 10  #: RLIMIT_CPU, per process
    memory_bytes: int | None = 1024 * _MiB  #: RLIMIT_AS (virtual address space), per process
    file_size_bytes: int | None = 16 * _MiB  #: RLIMIT_FSIZE: the largest file it can write
    max_processes: int | None = 32  #: cgroup pids.max; RLIMIT_NPROC (per user, see the module doc)
    output_bytes: int | None = 1 * _MiB  #: stdout + stderr together


@dataclass
class Result:
    """How a run ended. status: passed (exit 0), failed (exit status not 0), killed (ended
    by a signal: the CPU limit, a crash, a kill), timeout (past the wall clock), output_limit
    (wrote more than the cap)."""

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    duration: float
    signal: int | None = None
    output_truncated: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- cgroups
def _cgroup_root() -> Path | None:
    """A writable cgroup folder with the pids controller, or None."""
    override = os.environ.get("ZOO_SANDBOX_CGROUP")
    if override == "off":
        return None
    candidates = [Path(override)] if override else [Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")]
    for c in candidates:
        try:
            if (c / "cgroup.procs").exists() and os.access(c, os.W_OK):
                v2 = (c / "cgroup.controllers").exists()
                if v2 and "pids" not in (c / "cgroup.subtree_control").read_text().split():
                    continue
                return c
        except OSError:
            continue
    return None


def cgroup_available() -> bool:
    """Whether runs get a cgroup of their own (pids.max and complete tracking)."""
    return _cgroup_root() is not None


def _make_cgroup(max_processes: int | None) -> Path | None:
    root = _cgroup_root()
    if root is None:
        return None
    path = root / f"zoo-sandbox-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        path.mkdir()
        if max_processes is not None:
            (path / "pids.max").write_text(str(max_processes))
        return path
    except OSError:
        try:
            path.rmdir()
        except OSError:
            pass
        return None


def _cgroup_pids(path: Path) -> list[int]:
    try:
        return [int(x) for x in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _remove_cgroup(path: Path) -> None:
    for _ in range(200):  # members must be gone (reaped by their parents or init) before rmdir
        for pid in _cgroup_pids(path):
            _kill(pid)
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.01)


# --------------------------------------------------------------------------- killing
def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _marked(token: str) -> list[int]:
    """Processes of this user whose environment carries the run's marker."""
    needle = f"{MARKER}={token}".encode()
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if needle in Path(entry.path, "environ").read_bytes().split(b"\0"):
                out.append(int(entry.name))
        except OSError:
            continue
    return out


def _kill_all(proc: subprocess.Popen, token: str, cgroup: Path | None) -> None:
    _killpg(proc.pid)
    for _ in range(3):  # a forking program can add members while we look: look again
        found = (_cgroup_pids(cgroup) if cgroup else []) + (_marked(token) if os.path.isdir("/proc") else [])
        found = [p for p in found if p != os.getpid()]
        if not found:
            break
        for pid in found:
            _kill(pid)
            try:
                _killpg(os.getpgid(pid))
            except OSError:
                pass
        time.sleep(0.005)


# --------------------------------------------------------------------------- running
def _limits_for_child(limits: Limits) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    if limits.cpu_seconds is not None:
        out["RLIMIT_CPU"] = (int(limits.cpu_seconds), int(limits.cpu_seconds) + 1)
    if limits.memory_bytes is not None:
        out["RLIMIT_AS"] = (int(limits.memory_bytes),) * 2
    if limits.file_size_bytes is not None:
        out["RLIMIT_FSIZE"] = (int(limits.file_size_bytes),) * 2
    if limits.max_processes is not None:
        out["RLIMIT_NPROC"] = (int(limits.max_processes),) * 2
    out["RLIMIT_CORE"] = (0, 0)
    return out


def _check_limits(limits: Limits) -> None:
    for name in ("timeout", "cpu_seconds", "memory_bytes", "file_size_bytes", "max_processes", "output_bytes"):
        v = getattr(limits, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
            raise UsageError(f"sandbox limit {name} must be a positive number or None, got {v!r}")


def run(source: str, *, limits: Limits | None = None, files: dict[str, str | bytes] | None = None,
        stdin: str | bytes | None = None, env: dict[str, str] | None = None, site: bool = True,
        **limit_kw: float | None) -> Result:
    """Run Python `source` as `main.py` in a fresh temporary directory under `limits` (or a
    default Limits with any field given as a keyword: `run(src, timeout=3, memory_bytes=2**28)`).
    `files` are written beside it first; `stdin` is fed to it (default: nothing, EOF at once);
    `env` adds variables; `site=False` starts Python without site-packages (`-S`: only the
    standard library, a third faster to start). Always returns a Result; UsageError only for bad arguments."""
    if not isinstance(source, str):
        raise UsageError(f"sandbox.run takes the program's source as a string, got {type(source).__name__}")
    lim = limits or Limits()
    if limit_kw:
        unknown = set(limit_kw) - set(Limits.__dataclass_fields__)
        if unknown:
            raise UsageError(f"unknown sandbox limit(s) {sorted(unknown)}; known: {sorted(Limits.__dataclass_fields__)}")
        lim = Limits(**{**asdict(lim), **limit_kw})
    _check_limits(lim)
    token = secrets.token_hex(8)
    workdir = Path(tempfile.mkdtemp(prefix="zoo-sandbox-"))
    cgroup = _make_cgroup(lim.max_processes)
    try:
        (workdir / "main.py").write_text(source)
        for name, content in (files or {}).items():
            target = (workdir / name).resolve()
            if workdir.resolve() not in target.parents:
                raise UsageError(f"sandbox file {name!r} would land outside the run's folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode() if isinstance(content, str) else content)
        child_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir), "TMPDIR": str(workdir),
                     "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1", **(env or {}),
                     MARKER: token}
        cfg = json.dumps({"limits": _limits_for_child(lim), "cgroup": str(cgroup) if cgroup else None})
        return _supervise([sys.executable, "-I", *([] if site else ["-S"]), "-c", _BOOT, cfg], workdir, child_env, stdin, lim, token, cgroup)
    finally:
        if cgroup is not None:
            _remove_cgroup(cgroup)
        shutil.rmtree(workdir, ignore_errors=True)


def _supervise(argv: list[str], workdir: Path, env: dict[str, str], stdin: str | bytes | None, lim: Limits,
               token: str, cgroup: Path | None) -> Result:
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=workdir, env=env, start_new_session=True, close_fds=True,
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    notes: list[str] = []
    if cgroup is None:
        notes.append("no cgroup: processes are bounded by RLIMIT_NPROC (per user; not for root)")
    if stdin is not None:
        try:
            assert proc.stdin is not None
            proc.stdin.write(stdin.encode() if isinstance(stdin, str) else stdin)
        except (BrokenPipeError, OSError):
            pass
        finally:
            try:
                proc.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass
    chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    total = 0
    status: str | None = None
    sel = selectors.DefaultSelector()
    for name in ("stdout", "stderr"):
        stream = getattr(proc, name)
        os.set_blocking(stream.fileno(), False)
        sel.register(stream, selectors.EVENT_READ, name)
    deadline = None if lim.timeout is None else start + lim.timeout
    cap = lim.output_bytes
    try:
        while True:
            if proc.poll() is not None:
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                status = "timeout"
                break
            wait = 0.05 if deadline is None else max(0.0, min(0.05, deadline - now))
            if not sel.get_map():  # it closed both streams: just wait for it
                try:
                    proc.wait(timeout=wait)
                except subprocess.TimeoutExpired:
                    pass
                continue
            for key, _ in sel.select(wait):
                data = _read(key.fileobj)
                if data is None:
                    continue
                if not data:  # EOF: the program closed this stream (it may run on)
                    sel.unregister(key.fileobj)
                    continue
                chunks[key.data].append(data)
                total += len(data)
                if cap is not None and total > cap:
                    status = "output_limit"
                    break
            if status:
                break
    finally:
        _kill_all(proc, token, cgroup)  # whatever happened, nothing of it stays alive
        proc.wait()
        # drain what is left in the pipes, briefly: a descendant we could not kill may hold them open
        end = time.monotonic() + 0.2
        while sel.get_map() and time.monotonic() < end and status != "output_limit":
            for key, _ in sel.select(0.02):
                data = _read(key.fileobj)
                if data is None:
                    continue
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                chunks[key.data].append(data)
                total += len(data)
                if cap is not None and total > cap:
                    status = "output_limit"
                    break
        sel.close()
        for name in ("stdout", "stderr"):
            getattr(proc, name).close()
    duration = time.monotonic() - start
    rc = proc.returncode
    sig = -rc if rc is not None and rc < 0 else None
    if status is None:
        status = "passed" if rc == 0 else ("killed" if sig else "failed")
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and lim.cpu_seconds is not None):
            notes.append("CPU time limit")
    out_b, err_b = b"".join(chunks["stdout"]), b"".join(chunks["stderr"])
    truncated = cap is not None and len(out_b) + len(err_b) > cap
    if truncated:
        keep_out = min(len(out_b), cap)
        out_b, err_b = out_b[:keep_out], err_b[:cap - keep_out]
    return Result(status=status, returncode=None if status == "timeout" else rc,
                  stdout=out_b.decode("utf-8", "replace"), stderr=err_b.decode("utf-8", "replace"),
                  duration=duration, signal=sig, output_truncated=truncated, notes=notes)


def _read(stream: object) -> bytes | None:
    """A chunk, b"" at end of stream, None when nothing is there yet."""
    try:
        return os.read(stream.fileno(), 65536)  # type: ignore[attr-defined]
    except BlockingIOError:
        return None
    except OSError:
        return b""


def run_many(sources: Sequence[str], *, workers: int = 2, progress: bool | str = False,
             **kw: object) -> list[Result]:
    """Run several programs, `workers` at a time (each its own sandboxed process; the threads
    here only wait on them), results in input order. `progress`: a tqdm bar (a string is its label)."""
    if not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers must be a positive integer, got {workers!r}")
    return list(imap(sources, workers=workers, progress=progress, **kw))


def imap(sources: Iterable[str], *, workers: int = 2, progress: bool | str = False, total: int | None = None,
         **kw: object) -> Iterator[Result]:
    """run_many as an iterator, in input order."""
    from tqdm.auto import tqdm

    items = list(sources)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run, s, **kw) for s in items]  # type: ignore[arg-type]
        it = tqdm(futures, total=total or len(items), desc=progress if isinstance(progress, str) else None,
                  disable=not progress, unit="run")
        for f in it:
            yield f.result()
