"""How a model's weight matrices are stored: the spec's `quantization:` section.

    quantization: {kind: int4, group_size: 32, symmetric: true, skip: [output]}

Weight-only integers with float scales: `int8` one scale per output channel (symmetric absmax),
`int4` one scale per `group_size` inputs of each output channel (symmetric, or asymmetric with
an integer zero point per group). Which matrices: every node whose kind is `quantizable` (the
linear projections) except those whose canonical path matches a `skip` glob; lookup tables
(the token embedding) are never quantized, and `output` (the vocabulary projection) is skipped
by default, as llama.cpp keeps both at higher precision.

`annotate` marks the chosen IR nodes (`node.attrs["quant"]`, a `QuantStorage`); the linear kind
checks that its group size divides its inputs, accounting sums the stored bytes, and lowering
gives the marked nodes integer-weight modules (runtime/quant).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from .errors import Problem, SpecError
from .ir import Node
from .registry import Strict

GROUP_SIZES = (32, 64, 128, 256)  # what torch's int4 CPU kernel takes
SCALE_BYTES = 4  # scales are stored in float32
DEFAULT_SKIP = ("output",)


class Quantization(Strict):
    """Weight-only integer storage of the model's linear projections."""

    kind: Literal["int8", "int4"] = Field(description="int8: per output channel; int4: group-wise")
    group_size: Literal[32, 64, 128, 256] | None = Field(
        None, description="int4: inputs sharing one scale (default 32); int8 has one scale per output channel")
    symmetric: bool = Field(True, description="int4: false stores a zero point per group (asymmetric)")
    skip: list[str] = Field(default_factory=lambda: list(DEFAULT_SKIP),
                            description="globs of canonical linear paths kept in float (default: output)")

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") == "int4" and data.get("group_size") is None:
            data = {**data, "group_size": 32}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "Quantization":
        from .registry import FieldError

        if self.kind == "int8" and self.group_size is not None:
            raise FieldError(("group_size",), "int8 has one scale per output channel; group_size is for int4")
        if self.kind == "int8" and not self.symmetric:
            raise FieldError(("symmetric",), "int8 is symmetric (per-channel absmax); zero points are for int4")
        return self

    def describe(self) -> str:
        """int8 | int4 g32 | int4 g64 asym."""
        if self.kind == "int8":
            return "int8 per channel"
        return f"int4 g{self.group_size}" + ("" if self.symmetric else " asym")


@dataclass(frozen=True)
class QuantStorage:
    """One matrix (out_features N x in_features K) as stored: its tensors and their bytes."""

    bits: int  # 8 | 4
    group_size: int | None  # int4 only
    symmetric: bool
    out_features: int
    in_features: int

    @property
    def groups(self) -> int:
        return 1 if self.group_size is None else self.in_features // self.group_size

    def shapes(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """Stored tensor name -> (shape, dtype name)."""
        n, k = self.out_features, self.in_features
        if self.bits == 8:
            return {"qweight": ((n, k), "int8"), "scales": ((n,), "float32")}
        out = {"qweight": ((n, k // 2), "uint8"), "scales": ((n, self.groups), "float32")}
        if not self.symmetric:
            out["zeros"] = ((n, self.groups), "uint8")
        return out

    @property
    def nbytes(self) -> int:
        size = {"int8": 1, "uint8": 1, "float32": 4}
        total = 0
        for shape, dtype in self.shapes().values():
            n = size[dtype]
            for s in shape:
                n *= s
            total += n
        return total

    def fits(self) -> bool:
        """Whether the group size divides the inputs (int8: always)."""
        return self.group_size is None or self.in_features % self.group_size == 0


def skipped(path: str, q: Quantization) -> bool:
    return any(fnmatch.fnmatchcase(path, pat) for pat in q.skip)


def annotate(ir: Node, q: Quantization | None) -> None:
    """Mark every quantizable node not skipped with its `QuantStorage` (`attrs["quant"]`)."""
    if q is None:
        return
    ir.attrs["quantization"] = q
    misfits: dict[int, list[str]] = {}
    widths: set[int] = set()
    for node in ir.walk():
        if not type(node.spec).quantizable or skipped(node.path, q):
            continue
        d_out, d_in = node.params[0].sizes
        node.attrs["quant"] = storage = QuantStorage(8 if q.kind == "int8" else 4, q.group_size, q.symmetric,
                                                     d_out, d_in)
        widths.add(d_in)
        if not storage.fits():
            misfits.setdefault(d_in, []).append(node.path)
    if misfits:
        what = "; ".join(f"{k}: {len(p)} linear(s) ({', '.join(p[:2])}{', …' if len(p) > 2 else ''})"
                         for k, p in misfits.items())
        fits = [g for g in GROUP_SIZES if all(k % g == 0 for k in widths)]
        raise SpecError(Problem("quantization.group_size", f"{q.group_size} does not divide the in_features of "
                                f"every quantized linear: {what}",
                                expected=(f"group_size {' or '.join(map(str, fits))}" if fits else
                                          "a group_size dividing every in_features") + ", or skip those linears"))


def quantized_nodes(ir: Node) -> list[Node]:
    return [n for n in ir.walk() if "quant" in n.attrs]


@dataclass(frozen=True)
class StoredBytes:
    """The bytes of the weights as stored: the quantized matrices (integers, scales, zero
    points) and the parameters kept in float (per float dtype)."""

    scheme: str
    matrices: int  # how many are quantized
    quantized_params: int
    quantized_bytes: int
    float_params: int

    def total(self, float_bytes: int) -> int:
        return self.quantized_bytes + self.float_params * float_bytes


def stored_bytes(ir: Node, params: int) -> StoredBytes | None:
    q = ir.attrs.get("quantization")
    if q is None:
        return None
    nodes = quantized_nodes(ir)
    qparams = sum(n.params[0].numel for n in nodes)
    qbytes = sum(n.attrs["quant"].nbytes for n in nodes)
    return StoredBytes(q.describe(), len(nodes), qparams, qbytes, params - qparams)
