"""The kind registry: every component of the spec language is one registered class.

A kind class is a pydantic model (its spec fields, strict and frozen) that also answers every
question a compiler phase asks of a component:

| phase                | method                                    | default                         |
|----------------------|-------------------------------------------|---------------------------------|
| IR                   | `ir(path, ctx) -> Node`                   | (kinds that make a node)        |
| checks               | `check(node) -> [Problem]`                | nothing to check                |
| accounting           | `cost(node, ctx, inner) -> Cost`          | own parameters + the children's |
| kernel selection     | `kernels(node, backend) -> [KernelRow]`   | none                            |
| lowering             | `lower(node, backend)`                    | (what its parent builds with)   |
| sharding plan        | `shard(node, tp) -> {name: Shard}`        | its own parameters replicated   |

Kinds are grouped in *slots* (`ffn`, `norm`, `attention`, `position`, `heads`, `arch`, …): a
spec field typed `Slot("ffn")` accepts any kind registered in that slot, chosen by its `kind`
key. The pydantic unions and the JSON Schema are built from the registry when first needed, and
rebuilt when a kind is registered later (a user's own kind), so a new kind is one class and one
`@register`: no union, phase or dispatcher names it. See docs/extending.md.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler
from pydantic_core import core_schema

if typing.TYPE_CHECKING:
    from .errors import Problem
    from .ir import Node


class FieldError(ValueError):
    """A validator's complaint about a key below the model it validates: `at` is that key's
    path relative to the model, so the error can name (and point at) the key itself."""

    def __init__(self, at: tuple[str, ...], message: str):
        super().__init__(message)
        self.at = tuple(str(k) for k in at)


_MODELS: list[type[BaseModel]] = []  # every spec model class, in definition order
_KINDS: dict[str, dict[str, type["Kind"]]] = {}  # slot -> kind name -> class
_SEALED = False  # set once a schema was built: a later registration rebuilds every model


class Strict(BaseModel):
    """A spec record: unknown keys are errors, values are frozen, types strict (no boolean for
    a number, no string for an int) and floats finite. Schemas are built on first use
    (`defer_build`), when every built-in kind has registered."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True, strict=True, allow_inf_nan=False)

    @classmethod
    def __pydantic_init_subclass__(cls, **kw: Any) -> None:
        super().__pydantic_init_subclass__(**kw)
        _MODELS.append(cls)


@dataclass
class Cost:
    """What a subtree of the IR costs: parameters by part, forward FLOPs and KV-cache elements
    per token, and the parameters a token does not run through (experts the router skips)."""

    params: dict[str, int] = field(default_factory=dict)
    flops: int = 0
    kv_elems: int = 0
    inactive: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        params = dict(self.params)
        for k, v in other.params.items():
            params[k] = params.get(k, 0) + v
        return Cost(params, self.flops + other.flops, self.kv_elems + other.kv_elems, self.inactive + other.inactive)

    @property
    def total(self) -> int:
        return sum(self.params.values())


@dataclass(frozen=True)
class Shard:
    """How one parameter splits across tensor-parallel ranks: `style` (replicate, colwise,
    rowwise, vocab) and the tensor dimension cut into tp equal slices (None: every rank holds it
    whole). A linear's weight is [out, in]: colwise cuts dim 0, rowwise dim 1."""

    style: str = "replicate"
    dim: int | None = None


REPLICATE = Shard()


@dataclass(frozen=True)
class KernelRow:
    """One line of `--explain`: an op (canonical path), what kind of op, the kernel and why."""

    op: str
    kind: str
    kernel: str
    why: str
    after_children: bool = False  # listed after the rows of the node's children (a decoder's output)


class Kind(Strict):
    """Base of every component kind. Subclasses set `slots`, a `kind: Literal[...]` field with
    the kind's one name as default, and override the phase methods that apply to them."""

    #: the slots this kind fills (a dense FFN kind is both an `ffn` and an MoE `expert`)
    slots: ClassVar[tuple[str, ...]]
    #: accounting bucket for this kind's whole subtree ("attention", "vision" …): the outermost
    #: node with a part takes its subtree's parameters; None: the parameters go to the parent's.
    part: ClassVar[str | None] = None
    #: one FSDP unit (`fully_shard` group): its subtree's parameters gather together (a block);
    #: parameters outside every unit go with the root's
    fsdp_unit: ClassVar[bool] = False
    #: a weight matrix (params[0], out x in) that weight-only quantization may store as
    #: integers with scales (the spec's `quantization:`; compiler/quantization.py)
    quantizable: ClassVar[bool] = False

    @property
    def kind_name(self) -> str:
        return type(self).model_fields["kind"].default

    def describe(self) -> str:
        """One short line for people (`zoo show`, the model card): "swiglu 11008"."""
        return self.kind_name

    # ------------------------------------------------------------------ phases
    def ir(self, path: str, ctx: Any) -> "Node":
        raise NotImplementedError(f"{self.kind_name} makes no IR node of its own")

    def check(self, node: "Node") -> list["Problem"]:
        return []

    def cost(self, node: "Node", ctx: Any, inner: Cost) -> Cost:
        """`inner` is the children's cost; the default adds this node's own parameters."""
        own = sum(p.numel for p in node.params)
        return inner + Cost({"": own}) if own else inner

    def kernels(self, node: "Node", backend: Any) -> list[KernelRow]:
        return []

    def lower(self, node: "Node", backend: Any) -> Any:
        raise NotImplementedError(f"{self.kind_name} has no lowering of its own")

    def shard(self, node: "Node", tp: int) -> dict[str, Shard]:
        """The tensor-parallel plan of the parameters this kind decides, by canonical name: its
        own, and those of children it claims (an attention's q/k/v/o linears); a parameter no
        ancestor claimed is its own node's kind's to decide. Raises SpecError when the component
        cannot split `tp` ways. The default: its own parameters replicated."""
        return {(f"{node.path}.{p.name}" if node.path else p.name): REPLICATE for p in node.params}


def kind_name_of(cls: type[Kind]) -> str:
    default = cls.model_fields["kind"].default
    if not isinstance(default, str):
        raise TypeError(f"{cls.__name__}: a kind needs a `kind: Literal[NAME] = NAME` field")
    return default


def register(cls: type[Kind]) -> type[Kind]:
    """Class decorator: make `cls` a choice of every spec field typed `Slot(s)` for each of
    its `slots`."""
    name = kind_name_of(cls)
    for s in cls.slots:
        by_name = _KINDS.setdefault(s, {})
        if name in by_name and by_name[name] is not cls:
            raise ValueError(f"kind {name!r} is already registered in slot {s!r} by {by_name[name].__qualname__}")
    for s in cls.slots:
        _KINDS[s][name] = cls
    if _SEALED:  # schemas were built without this kind: rebuild them, members before containers
        for model in _MODELS:
            model.model_rebuild(force=True)
    return cls


def kinds(slot: str) -> dict[str, type[Kind]]:
    """The kinds registered in `slot`, by name, in registration order."""
    return dict(_KINDS.get(slot, {}))


def slots() -> dict[str, dict[str, type[Kind]]]:
    return {s: dict(k) for s, k in _KINDS.items()}


def all_kinds() -> Iterator[type[Kind]]:
    for by_name in _KINDS.values():
        yield from by_name.values()


def kind_names() -> set[str]:
    return {name for by_name in _KINDS.values() for name in by_name}


def get(slot: str, name: str) -> type[Kind]:
    try:
        return _KINDS[slot][name]
    except KeyError:
        raise KeyError(f"no kind {name!r} in slot {slot!r}; registered: {', '.join(kinds(slot))}") from None


class Slot:
    """Field metadata: `ffn: Annotated[Kind, Slot("ffn")]` holds any kind registered in slot
    "ffn", picked by its `kind` key (a tagged union built from the registry). With `default`,
    a mapping without `kind` is that kind (`rope: {theta: 1e6}`)."""

    def __init__(self, slot: str, default: str | None = None):
        self.slot = slot
        self.default = default

    def __repr__(self) -> str:
        return f"Slot({self.slot!r})"

    def _tag(self, value: Any) -> Any:
        if isinstance(value, dict):
            return value.get("kind", self.default)
        return getattr(value, "kind", None)

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        global _SEALED
        _SEALED = True
        choices = {name: handler.generate_schema(cls) for name, cls in _KINDS.get(self.slot, {}).items()}
        if not choices:
            raise TypeError(f"no kinds registered in slot {self.slot!r}")
        # a plain discriminator keeps the JSON Schema's mapping; a default kind needs a function
        union = core_schema.tagged_union_schema(choices, discriminator=self._tag if self.default else "kind")  # type: ignore[arg-type]
        optional = type(None) in typing.get_args(source)
        return core_schema.nullable_schema(union) if optional else union


def slot_of(annotation: Any, metadata: list[Any] = ()) -> Slot | None:  # type: ignore[assignment]
    """The Slot a field's annotation (or its pydantic metadata) carries, if any."""
    for m in list(metadata) + list(getattr(annotation, "__metadata__", ())):
        if isinstance(m, Slot):
            return m
    return None
