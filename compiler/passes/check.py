"""Shape and consistency checks on the IR: what no single schema field can see. Each node's
kind checks its own node."""

from __future__ import annotations

from ..errors import Problem, SpecError
from ..ir import Node


#: no tensor of a real model comes near these; past them a spec is a typo, and torch would fail late
MAX_TENSOR = 1 << 40
MAX_TOTAL = 1 << 45


def check_ir(ir: Node, source: str | None = None) -> None:
    """Raise SpecError listing every inconsistency (all at once), sizes before anything else."""
    total = 0
    for name, p in ir.parameters():
        total += p.numel
        if p.numel > MAX_TENSOR:
            raise SpecError(Problem(name, f"{p.numel:,} elements in one tensor; at most {MAX_TENSOR:,}"), source=source)
    if total > MAX_TOTAL:
        raise SpecError(Problem("", f"{total:,} parameters; at most {MAX_TOTAL:,}"), source=source)
    problems: list[Problem] = [p for node in ir.walk() for p in node.spec.check(node)]
    if problems:
        raise SpecError(problems, source=source)
