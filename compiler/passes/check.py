"""Shape and consistency checks on the IR: what no single schema field can see."""

from __future__ import annotations

from ..errors import Problem, SpecError
from ..ir import Node


def check_ir(ir: Node, source: str | None = None) -> None:
    """Raise SpecError listing every inconsistency (all at once)."""
    problems: list[Problem] = []
    for node in ir.walk():
        if node.kind == "attention":
            a = node.attrs["spec"]
            q, k, v, o = (node.child(n) for n in "qkvo")
            if q.attrs["out"] != o.attrs["in"]:
                problems.append(Problem(node.path, "q output and o input sizes differ"))
            if k.attrs["out"] != v.attrs["out"]:
                problems.append(Problem(node.path, "k and v sizes differ"))
            if a.rope is not None and a.head_dim % 2:
                problems.append(Problem(f"{node.path}", f"RoPE needs an even head_dim, got {a.head_dim}"))
        elif node.kind == "ffn":
            lins = {c.path.rsplit(".", 1)[-1]: c for c in node.children}
            if lins["up"].attrs["out"] != lins["down"].attrs["in"]:
                problems.append(Problem(node.path, "up output and down input sizes differ"))
            if "gate" in lins and lins["gate"].attrs["out"] != lins["up"].attrs["out"]:
                problems.append(Problem(node.path, "gate and up sizes differ"))
    if problems:
        raise SpecError(problems, source=source)
