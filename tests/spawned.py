"""Run a test's ranks as spawned processes (not forked: a forked torch is unsafe), bounded in
time: a rank that hangs (a missed collective) fails the test instead of stalling the suite."""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
import torch.multiprocessing as mp


def spawn_ranks(fn: Callable[..., None], args: tuple[Any, ...], nprocs: int, limit_s: float, what: str) -> None:
    """fn(rank, *args) in `nprocs` spawned processes; raises if one fails, fails the test past `limit_s`."""
    ctx = mp.start_processes(fn, args=args, nprocs=nprocs, join=False, start_method="spawn")
    deadline = time.monotonic() + limit_s
    while not ctx.join(timeout=1):  # raises if a rank failed
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"{what} did not finish in {limit_s:.0f} s")
