"""`quantize=` of zoo.load / zoo.build and `zoo quantize`: a float model's linears stored as
int8 or int4 (the spec's `quantization:` section, compiler/quantization.py).

The spec carries how the weights are stored, so a saved quantized model is a folder whose
zoo.yaml says `quantization: {kind: int4, group_size: 32, ...}` beside safetensors holding
the integers and scales under canonical names (`blocks.0.attn.q.qweight`, `.scales`,
`.zeros`); loading it builds the integer modules on the meta device and streams those tensors
in, with no float weights and no quantizing again.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from ..compiler import compile as compile_spec
from ..compiler.errors import UsageError
from ..compiler.frontend import RawSpec
from ..compiler.frontend import compile_spec as validate_spec
from ..compiler.lowering import swap_quantized
from ..compiler.schema import ModelSpec, Quantization

QuantizeArg = str | Mapping[str, Any] | Quantization | None


def quantization_request(quantize: QuantizeArg, group_size: int | None = None,
                         symmetric: bool | None = None, skip: list[str] | None = None) -> dict[str, Any] | None:
    """The spec section `quantize=` asks for ("int8", "int4", a mapping or a Quantization;
    `group_size`, `symmetric` and `skip` fill in or replace its fields), as data the spec
    validates; None when nothing is asked."""
    if quantize is None:
        if group_size is not None or symmetric is not None or skip is not None:
            raise UsageError("group_size, symmetric and skip go with quantize='int8' or 'int4'")
        return None
    if isinstance(quantize, Quantization):
        out = quantize.model_dump(mode="json")
    elif isinstance(quantize, str):
        out = {"kind": quantize}
    elif isinstance(quantize, Mapping):
        out = dict(quantize)
    else:
        raise UsageError(f"quantize takes 'int8', 'int4', a mapping or a Quantization, got {type(quantize).__name__}")
    for key, value in (("group_size", group_size), ("symmetric", symmetric), ("skip", skip)):
        if value is not None:
            out[key] = list(value) if key == "skip" else value
    return out


def with_quantization(spec: ModelSpec, section: Mapping[str, Any] | None) -> ModelSpec:
    """`spec` whose weights are stored as `section` says (None: float), validated again: a bad
    kind or group size is a SpecError naming `quantization.<key>`."""
    data = spec.model_dump(mode="json")
    data.pop("quantization", None)
    if section is not None:
        data["quantization"] = dict(section)
    return validate_spec(RawSpec(data, {}, f"<{spec.name} quantize>"))


def quantize_model(model: nn.Module, section: Mapping[str, Any], *, progress: bool | None = None) -> nn.Module:
    """Quantize a float zoo model in place (its marked linears swapped one at a time for their
    integer copies, each float weight dropped as it goes); its spec and plan become the
    quantized ones. A model that is already quantized is refused: quantizing its dequantized
    weights again would lose more than the first time."""
    spec: ModelSpec = model.spec  # type: ignore[attr-defined]
    if spec.quantization is not None:
        raise UsageError(f"{spec.name} is already stored as {spec.quantization.describe()}; quantize its float "
                         "checkpoint instead (quantizing dequantized weights loses more)")
    qspec = with_quantization(spec, section)
    old = model.compiled  # type: ignore[attr-defined]
    compiled = compile_spec(qspec, old.backend.name, _device(model))  # SpecError: a group size that does not divide
    swap_quantized(model, compiled.ir, from_float=True)
    model.set_backend(compiled.require_backend())  # type: ignore[operator]
    model.spec, model.compiled = qspec, compiled  # type: ignore[attr-defined]
    return model


def _device(model: nn.Module) -> Any:
    p = next(model.parameters(), None)
    return p.device if p is not None else "cpu"


def stored_shapes(compiled: Any, net: nn.Module) -> dict[str, tuple[int, ...]]:
    """Canonical name -> shape of what a checkpoint of this model holds: the IR's parameters,
    or for a quantized spec the integer modules' tensors in their place."""
    if compiled.spec.quantization is None:
        return {n: p.sizes for n, p in compiled.ir.parameters()}
    return {n: tuple(p.shape) for n, p in net.named_parameters()}
