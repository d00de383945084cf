"""Running one hostile case safely, and naming how it ended.

`isolated(fn, ...)` runs a case in a forked child under a wall-clock limit and an address-space
limit (RLIMIT_AS), so a case that hangs, blows up memory or kills the interpreter cannot take the
test session (or the bench harness) with it. Its `Outcome.kind` is one of
ok | zoo (a ZooError: the contract) | other (any other exception: a traceback) |
timeout | memory | crash.

The contract the tests hold the product to (issue "Hostile input and faults"): every failure on
bad input is a `zoo.ZooError`, in bounded time and memory; the CLI answers `error: ...` on stderr
with exit code 2 and never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
import select
import signal
import struct
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from zoo import ZooError

#: seconds a case may take (the issue: "each case finishes within a few seconds")
CASE_SECONDS = float(os.environ.get("ZOO_FUZZ_CASE_SECONDS", "6"))
#: address space a case may add to what the test process already maps
CASE_MEMORY = int(os.environ.get("ZOO_FUZZ_CASE_MEMORY", str(3 << 30)))


class ContractViolation(AssertionError):
    """The product accepted something the contract forbids, without an error (the harness's
    "accepted although wrong"), e.g. a save that destroyed the user's files."""


def violate(message: str) -> None:
    raise ContractViolation(message)


@dataclass
class Outcome:
    """How one case ended."""

    kind: str  # ok | zoo | other | timeout | memory | crash
    exc_type: str = ""
    message: str = ""
    value: Any = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    tb: str = ""

    @property
    def head(self) -> str:
        return (self.message.strip().splitlines() or [""])[0][:300]

    def __str__(self) -> str:
        if self.kind == "ok":
            text = f"accepted (returned {str(self.value)[:200]!r})"
        elif self.kind in ("timeout", "crash", "memory"):
            text = f"{self.kind}: {self.head}"
        else:
            text = f"{self.exc_type}: {self.head}"
        if self.kind == "other" and self.tb:
            text += "\n" + self.tb[-1500:]
        return text


def classify(e: BaseException) -> Outcome:
    """An exception as an Outcome: a ZooError is the contract; MemoryError and allocation
    failures are blow-ups; anything else is a traceback."""
    msg = str(e)
    if len(msg) > 4000:
        msg = msg[:4000] + " …"
    name = f"{type(e).__module__}.{type(e).__qualname__}".removeprefix("builtins.")
    if isinstance(e, ZooError):
        return Outcome("zoo", name, msg)
    if isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and "can't allocate memory" in msg):
        return Outcome("memory", name, msg or "MemoryError")
    return Outcome("other", name, msg, tb=traceback.format_exc()[-3000:])


def assert_refused(out: Outcome, what: str) -> None:
    """A hostile input: must end in a ZooError, within the limits."""
    assert out.kind == "zoo", f"{what}: expected a ZooError, got {out}"


def assert_accepted(out: Outcome, what: str) -> None:
    """A valid input (a control): must be accepted, within the limits."""
    assert out.kind == "ok", f"{what}: a valid input must be accepted, got {out}"


def assert_handled(out: Outcome, what: str) -> None:
    """An input that may or may not be valid: accepted or a ZooError, never anything else."""
    assert out.kind in ("ok", "zoo"), f"{what}: expected success or a ZooError, got {out}"


def _vm_bytes() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _private_tqdm_lock() -> None:
    """tqdm's write lock holds a multiprocessing semaphore shared by every process forked after
    it was made: a case killed while holding it (a save SIGKILLed midway) would block every later
    case. Independent processes never share it, so each forked case gets a lock of its own."""
    std = sys.modules.get("tqdm.std")
    if std is None:
        return
    std.TqdmDefaultWriteLock.mp_lock = None
    lock = std.TqdmDefaultWriteLock()
    todo = [std.tqdm]
    while todo:  # tqdm.auto's class is a subclass that may hold a lock of its own
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls is std.tqdm or "_lock" in cls.__dict__:
            cls._lock = lock


def _child(fn: Callable[..., Any], args: tuple, kwargs: dict, w: int, timeout: float, mem: int | None) -> None:
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if mem:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = _vm_bytes() + mem
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(int(timeout) + 3)  # a last resort if the parent's kill is late
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    _private_tqdm_lock()
    t0 = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = Outcome("ok", value=fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - classifying is the point
            out = classify(e)
    out.seconds = time.monotonic() - t0
    out.warnings = [f"{c.category.__name__}: {str(c.message)[:300]}" for c in caught][:30]
    try:
        payload = pickle.dumps(out)
    except Exception:  # noqa: BLE001
        out.value = repr(out.value)[:1000]
        payload = pickle.dumps(out)
    data = struct.pack("<Q", len(payload)) + payload
    while data:
        n = os.write(w, data)
        data = data[n:]


def isolated(fn: Callable[..., Any], *args: Any, timeout: float | None = None, mem: int | None = CASE_MEMORY,
             **kwargs: Any) -> Outcome:
    """Run `fn(*args, **kwargs)` in a forked child (its own process group) with a time limit and
    `mem` bytes of address space beyond the parent's; the child's grandchildren are killed too."""
    timeout = CASE_SECONDS if timeout is None else timeout
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    r, w = os.pipe()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            _child(fn, args, kwargs, w, timeout, mem)
        finally:
            os._exit(0)
    os.close(w)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    buf, need, deadline = b"", None, t0 + timeout
    timed_out = False
    try:
        while True:
            if need is not None and len(buf) >= need + 8:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([r], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(r, 1 << 20)
            if not chunk:
                break
            buf += chunk
            if need is None and len(buf) >= 8:
                need = struct.unpack("<Q", buf[:8])[0]
    finally:
        os.close(r)
    if timed_out:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return Outcome("timeout", message=f"no result within {timeout:g} s", seconds=time.monotonic() - t0)
    _, status = os.waitpid(pid, 0)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # stray grandchildren
    if need is not None and len(buf) >= need + 8:
        return pickle.loads(buf[8:8 + need])
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        kind = "timeout" if sig == "SIGALRM" else "crash"
        return Outcome(kind, message=f"the interpreter died of {sig}", seconds=time.monotonic() - t0)
    return Outcome("crash", message=f"the child exited ({os.waitstatus_to_exitcode(status)}) without a result",
                   seconds=time.monotonic() - t0)
