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
    swap_quantized(model, ir)
    model.set_backend(backend)  # binds the backend's kernels on every module
    return model


def swap_quantized(model: nn.Module, ir: Node, from_float: bool = False) -> int:
    """Give every node the spec's quantization marked (`attrs["quant"]`) its integer-weight
    module (runtime/quant): empty on the meta device, or with `from_float` the quantized copy of
    the float linear there now (whose weight is then dropped). Returns how many were swapped."""
    from ..runtime.quant import QuantLinear, replace_module

    n = 0
    for node in ir.walk():
        q = node.attrs.get("quant")
        if q is None:
            continue
        lin = model.get_submodule(node.path)
        bits, group, sym = q.bits, q.group_size, q.symmetric
        if from_float:
            new = QuantLinear.from_linear(lin, bits, group, sym)
        else:
            new = QuantLinear(q.in_features, q.out_features, bits, group, sym, lin.bias is not None, device="meta")
        replace_module(model, node.path, new)
        n += 1
    return n
