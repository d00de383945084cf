"""zoo.compiler: schema, frontend, IR, passes and lowering."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import Location, Problem, SpecError, UnknownModelError, ZooError
from .ir import Node, build_ir
from .passes import Accounting, account, check_ir
from .schema import ModelSpec


@dataclass
class Compiled:
    """A checked spec with its IR, accounting and the kernels chosen for a backend."""

    spec: ModelSpec
    ir: Node
    accounting: Accounting
    backend: "object"  # lowering.BackendChoice
    kernels: list

    def explain(self) -> str:
        from .explain import render_plan

        return render_plan(self)


def compile_ir(spec: ModelSpec, source: str | None = None) -> tuple[Node, Accounting]:
    ir = build_ir(spec)
    check_ir(ir, source=source)
    return ir, account(ir)


def compile(spec: ModelSpec, backend: str | None = None, device: torch.device | str = "cpu") -> Compiled:  # noqa: A001
    """Check a spec, account for it, and pick kernels for `backend` on `device` (nothing allocated)."""
    from ..runtime import backends
    from .lowering import choose_backend, select_kernels

    ir, acc = compile_ir(spec)
    choice = choose_backend(backend, device)
    kernels = []
    if choice.name in backends.names():
        kernels = select_kernels(ir, backends.get(choice.name, device, check=False))
    return Compiled(spec, ir, acc, choice, kernels)


__all__ = ["Compiled", "Location", "ModelSpec", "Problem", "SpecError", "UnknownModelError", "ZooError", "compile",
           "compile_ir", "build_ir", "account", "check_ir"]
