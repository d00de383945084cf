"""What bench/hostile.py runs: a Case (a named input or fault, what it must end in, and the
function that runs it in a forked child), grouped in families."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

FAMILIES = {
    "specs": "spec files, overrides",
    "checkpoints": "checkpoints",
    "saves": "saves killed / concurrent / loads during saves",
    "hub": "Hub faults",
    "generation": "generation and images",
}


@dataclass
class Case:
    family: str
    name: str
    expect: str  # bad | good | check | any
    fn: Callable[[Path], Any]  # runs in the forked child, in a fresh folder (also its cwd)
    timeout: float = 6.0
    cli: bool = False
    named: bool = False  # a named regression case (kept by --quick)
    procs: int = 1  # processes it runs at once (2+: run alone)


class Family(list):
    """The cases of one family, in the order they are added."""

    def __init__(self, key: str, **defaults: Any):
        super().__init__()
        self.label = FAMILIES[key]
        self.defaults = defaults

    def add(self, name: str, expect: str, fn: Callable[[Path], Any], **kw: Any) -> None:
        self.append(Case(self.label, name, expect, fn, **{**self.defaults, **kw}))
