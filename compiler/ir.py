"""The IR: a tree of typed nodes mirroring the model, with one canonical name and a symbolic
shape per parameter. Canonical names are the zoo's own (they are the runtime's state_dict
keys); external layouts are reached through formats.

Every node holds the kind instance that made it (`node.spec`); the phases ask it, never a
kind's name. The root is the spec's `arch` kind's node; `build_ir` only asks it to build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator


@dataclass(frozen=True)
class Dim:
    """A named size: shapes print as [vocab=32000, dim=4096]."""

    name: str
    size: int

    def __str__(self) -> str:
        return f"{self.name}={self.size}"


@dataclass(frozen=True)
class Param:
    name: str  # local name: weight, bias
    shape: tuple[Dim, ...]
    init: str = "normal"  # normal | ones | zeros

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d.size
        return n

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(d.size for d in self.shape)


@dataclass
class Node:
    spec: Any  # the kind instance (registry.Kind) that answers for this node
    path: str  # canonical prefix of its parameters: "" for the root, "blocks.3.attn" …
    params: list[Param] = field(default_factory=list)
    children: list["Node"] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""  # its name under its parent (default: the path's last part)
    part: str | None = None  # accounting bucket (default: its kind's)

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.path.rsplit(".", 1)[-1]
        if self.part is None:
            self.part = type(self.spec).part

    @property
    def kind(self) -> str:
        return self.spec.kind_name

    def walk(self) -> Iterator["Node"]:
        yield self
        for c in self.children:
            yield from c.walk()

    def parameters(self) -> Iterator[tuple[str, Param]]:
        for node in self.walk():
            for p in node.params:
                yield (f"{node.path}.{p.name}" if node.path else p.name), p

    def child(self, name: str) -> "Node":
        for c in self.children:
            if c.name == name:
                return c
        raise KeyError(f"{self.path or '<root>'} has no child {name!r}")

    @property
    def numel(self) -> int:
        return sum(p.numel for _, p in self.parameters())


@dataclass(frozen=True)
class Scope:
    """What a component's IR depends on besides its own spec: the width of the stream it
    reads and writes, and whether its attention is causal (a decoder) or bidirectional within
    each packed sequence (a vision encoder's images)."""

    width: Dim
    causal: bool = True
    grid: int | None = None  # patches per side of the largest image (a vision encoder's)


def join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def build_ir(spec: Any) -> Node:
    """The IR of a validated ModelSpec. Sizes only: nothing is allocated."""
    root = spec.arch.ir("", None)
    root.attrs["model"] = spec.name
    return root
