"""Lowering: runtime modules on the meta device (nothing is allocated until weights arrive),
built by the root node's kind, which asks its children's kinds; then every canonical name
and shape of the IR is checked against the module tree, and the backend's kernels bound."""

from __future__ import annotations

from torch import nn

from ..runtime.backends import Backend
from .ir import Node


class LoweringError(AssertionError):
    """The runtime modules a kind lowered to disagree with its IR: a bug in that kind."""


def lower(ir: Node, backend: Backend) -> nn.Module:
    model = ir.spec.lower(ir, backend)
    expected = {name: p.sizes for name, p in ir.parameters()}
    got = {name: tuple(p.shape) for name, p in model.named_parameters()}
    if set(expected) != set(got):  # the IR's canonical names are the runtime's keys, by construction
        raise LoweringError(f"lowering mismatch: {sorted(set(expected) ^ set(got))[:5]}")
    bad = [k for k, shape in expected.items() if got[k] != shape]
    if bad:
        raise LoweringError(f"lowering shape mismatch: {[(k, expected[k], got[k]) for k in bad[:5]]}")
    model.set_backend(backend)  # binds the backend's kernels on every module
    return model
