"""Shape and consistency checks on the IR: what no single schema field can see. Each node's
kind checks its own node."""

from __future__ import annotations

from ..errors import Problem, SpecError
from ..ir import Node


def check_ir(ir: Node, source: str | None = None) -> None:
    """Raise SpecError listing every inconsistency (all at once)."""
    problems: list[Problem] = [p for node in ir.walk() for p in node.spec.check(node)]
    if problems:
        raise SpecError(problems, source=source)
