"""zoo.compiler: the kind registry, schema, frontend, IR, passes and lowering.

    spec ──build_ir──► IR ──check_ir──► ──account──► ──choose_backend──► Compiled ──lower──► nn.Module

`compile` runs every pass but lowering once; the explain text (`select_kernels`) is computed
only when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..runtime.backends import Backend, BackendUnavailable
from .errors import Location, Problem, SpecError, UnknownModelError, ZooError
from .ir import Node, build_ir
from .passes import (
    Accounting,
    BackendChoice,
    account,
    check_ir,
    choose_backend,
    select_kernels,
)
from .quantization import annotate
from .schema import ModelSpec


@dataclass
class Compiled:
    """A checked spec with its IR, accounting, and the backend it is planned for."""

    spec: ModelSpec
    ir: Node
    accounting: Accounting
    backend: BackendChoice
    runtime_backend: Backend | None = field(default=None, repr=False)
    _kernels: list[Any] | None = field(default=None, repr=False)

    @property
    def kernels(self) -> list[Any]:
        """Each op's kernel on the backend and why (computed on first use)."""
        if self._kernels is None:
            self._kernels = [] if self.runtime_backend is None else select_kernels(self.ir, self.runtime_backend)
        return self._kernels

    def require_backend(self) -> Backend:
        """The backend, or BackendUnavailable saying why it cannot run here."""
        if self.runtime_backend is None or not self.backend.available:
            raise BackendUnavailable(self.backend.why if self.runtime_backend is not None
                                     else f"unknown backend {self.backend.name!r}; {self.backend.why}")
        return self.runtime_backend

    def explain(self) -> str:
        from .explain import render_plan

        return render_plan(self)


def compile_ir(spec: ModelSpec, source: str | None = None) -> tuple[Node, Accounting]:
    ir = build_ir(spec)
    annotate(ir, spec.quantization)  # which matrices are stored as integers
    check_ir(ir, source=source)
    return ir, account(ir)


def compile(spec: ModelSpec, backend: str | None = None, device: torch.device | str = "cpu") -> Compiled:  # noqa: A001
    """Check a spec, account for it, and pick the backend for `device` (nothing allocated)."""
    ir, acc = compile_ir(spec)
    choice, runtime = choose_backend(backend, device)
    return Compiled(spec, ir, acc, choice, runtime)


__all__ = ["Compiled", "Location", "ModelSpec", "Problem", "SpecError", "UnknownModelError", "ZooError", "compile",
           "compile_ir", "build_ir", "account", "check_ir"]
