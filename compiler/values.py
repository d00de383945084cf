"""The value types of spec fields: strict (a boolean is not a number, "2" is not an int),
finite, and bounded, so a wrong value is refused where it is written instead of failing (or
allocating terabytes) later. Spec models are strict and refuse inf/nan (`registry.Strict`);
these add the ranges.

Integers written as integral floats (`4096.0`, what `${mul:...}` of a float gives) are
accepted as integers; booleans never are.
"""

from __future__ import annotations

from typing import Annotated, Any

from annotated_types import Ge, Gt, Le
from pydantic import BeforeValidator

#: upper bounds: far past any real model, small enough to refuse typos and blow-ups before work
MAX_WIDTH = 1 << 20  # dim, hidden sizes
MAX_LAYERS = 1024
MAX_HEADS = 4096
MAX_VOCAB = 1 << 24
MAX_CONTEXT = 1 << 24
MAX_EXPERTS = 4096


def _integral(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got a boolean ({value})")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"expected an integer, got {value!r} (it has a fractional part)")
        return int(value)
    return value


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got a boolean ({value})")
    return value


# (the constraints stand before the validator, which runs first; the JSON Schema keeps them)
def Size(high: int) -> Any:  # noqa: N802 - a type
    """A positive integer of at most `high`."""
    return Annotated[int, Gt(0), Le(high), BeforeValidator(_integral)]


def Number(gt: float | None = None, ge: float | None = None, le: float | None = None) -> Any:  # noqa: N802
    """A finite float (an int is accepted, a boolean is not) within the bounds given."""
    bounds = [b for b in (Gt(gt) if gt is not None else None, Ge(ge) if ge is not None else None,
                          Le(le) if le is not None else None) if b is not None]
    return Annotated[(float, *bounds, BeforeValidator(_number))]


Int = Annotated[int, BeforeValidator(_integral)]
Width = Size(MAX_WIDTH)
TokenId = Annotated[int, Ge(0), Le(MAX_VOCAB), BeforeValidator(_integral)]
Positive = Number(gt=0)
Eps = Number(gt=0, le=0.1)  # a norm's epsilon
