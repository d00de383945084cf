"""Named, invertible tensor transforms that formats compose in their YAML key maps.

A transform is written in the *import* direction (the format's tensors -> the zoo's canonical
tensors) and always knows its exact inverse, so the same key map exports: a round trip through
any format is bit-exact. Every transform works on a list of tensors so that one rule can fuse or
unfuse (split/concat/stack); 1 -> 1 transforms map over the list. Transforms only move data
(views, permutations, concatenation): no arithmetic, hence no rounding.

Adding one: a class with `forward`/`inverse`, registered under a name with `@register`.
Parameters in YAML may be integers or names of per-layer sizes (see `keymap.layer_sizes`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from ..compiler.errors import ZooError

Tensors = list[torch.Tensor]


class FormatError(ZooError, ValueError):
    """A format file is malformed, or a format cannot hold the model it is asked to."""


#: what reading a foreign config (config.json, params.json) can raise on bad values
READ_ERRORS = (KeyError, TypeError, ValueError, AttributeError, ArithmeticError, IndexError, RecursionError)


def unreadable(what: str, e: Exception) -> FormatError:
    """A FormatError for a config whose values are wrong: pydantic's complaints as `key: why`
    lines (the key as the spec names it), anything else by type and message."""
    errors = getattr(e, "errors", None)
    if callable(errors):
        lines = [f"{'.'.join(map(str, err['loc'])) or 'value'}: {err['msg']} (got {str(err.get('input'))[:40]!r})"
                 for err in e.errors(include_url=False)[:5]]  # type: ignore[attr-defined]
        return FormatError(f"{what}: " + "; ".join(lines))
    return FormatError(f"{what} ({type(e).__name__}: {str(e)[:300]})")


class Transform:
    """One invertible step. `forward`: external -> canonical (import); `inverse`: export."""

    name = "?"

    def forward(self, ts: Tensors) -> Tensors:
        raise NotImplementedError

    def inverse(self, ts: Tensors) -> Tensors:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{self.name}({args})"


REGISTRY: dict[str, Callable[..., Transform]] = {}


def register(name: str) -> Callable[[type[Transform]], type[Transform]]:
    def deco(cls: type[Transform]) -> type[Transform]:
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return deco


def _one(ts: Tensors, name: str) -> torch.Tensor:
    if len(ts) != 1:
        raise FormatError(f"transform {name} takes one tensor, got {len(ts)}")
    return ts[0]


@register("rope_permute")
class RopePermute(Transform):
    """Meta's interleaved RoPE rows (pairs 2j, 2j+1 of each head) -> the half-split layout
    (j, j + head_dim/2) that transformers and the zoo rotate. Rows are grouped per head, so
    `heads` is n_heads for q and n_kv_heads for k. Works for weights and biases alike."""

    def __init__(self, heads: int):
        self.heads = int(heads)

    def _check(self, t: torch.Tensor) -> int:
        if t.shape[0] % (2 * self.heads):
            raise FormatError(f"rope_permute: {t.shape[0]} rows do not split into {self.heads} heads of even size")
        return t.shape[0] // self.heads

    def forward(self, ts: Tensors) -> Tensors:
        out = []
        for t in ts:
            hd = self._check(t)
            out.append(t.reshape(self.heads, hd // 2, 2, *t.shape[1:]).transpose(1, 2).reshape(t.shape))
        return out

    def inverse(self, ts: Tensors) -> Tensors:
        out = []
        for t in ts:
            hd = self._check(t)
            out.append(t.reshape(self.heads, 2, hd // 2, *t.shape[1:]).transpose(1, 2).reshape(t.shape))
        return out


@register("transpose")
class Transpose(Transform):
    """Swap two dims (e.g. GPT-2's Conv1D stores Linear weights as (in, out)). Self-inverse."""

    def __init__(self, dims: Sequence[int] = (0, 1)):
        self.dims = (int(dims[0]), int(dims[1]))

    def forward(self, ts: Tensors) -> Tensors:
        return [t.transpose(*self.dims) for t in ts]

    inverse = forward


@register("split")
class Split(Transform):
    """One fused tensor -> parts along `dim` with `sizes` (fused qkv, gate_up); inverse: concat."""

    def __init__(self, dim: int, sizes: Sequence[int]):
        self.dim, self.sizes = int(dim), [int(s) for s in sizes]

    def forward(self, ts: Tensors) -> Tensors:
        t = _one(ts, self.name)
        if t.shape[self.dim] != sum(self.sizes):
            raise FormatError(f"split: dim {self.dim} has {t.shape[self.dim]}, sizes {self.sizes} sum to {sum(self.sizes)}")
        return list(torch.split(t, self.sizes, self.dim))

    def inverse(self, ts: Tensors) -> Tensors:
        return [torch.cat(ts, self.dim)]


@register("concat")
class Concat(Transform):
    """Parts -> one tensor along `dim` (the format stores pieces the zoo keeps fused);
    inverse: split by `sizes`."""

    def __init__(self, dim: int, sizes: Sequence[int]):
        self._split = Split(dim, sizes)
        self.dim, self.sizes = self._split.dim, self._split.sizes

    def forward(self, ts: Tensors) -> Tensors:
        return self._split.inverse(ts)

    def inverse(self, ts: Tensors) -> Tensors:
        return self._split.forward(ts)


@register("stack")
class Stack(Transform):
    """Equal-shaped tensors -> one with a new `dim` (per-expert weights -> a stacked parameter);
    inverse: unbind."""

    def __init__(self, dim: int = 0):
        self.dim = int(dim)

    def forward(self, ts: Tensors) -> Tensors:
        return [torch.stack(ts, self.dim)]

    def inverse(self, ts: Tensors) -> Tensors:
        return list(torch.unbind(_one(ts, self.name), self.dim))


@register("unstack")
class Unstack(Transform):
    """One stacked tensor -> its slices along `dim`; inverse: stack."""

    def __init__(self, dim: int = 0):
        self._stack = Stack(dim)
        self.dim = self._stack.dim

    def forward(self, ts: Tensors) -> Tensors:
        return self._stack.inverse(ts)

    def inverse(self, ts: Tensors) -> Tensors:
        return self._stack.forward(ts)


@register("split_interleaved")
class SplitInterleaved(Transform):
    """One tensor whose `dim` is `groups` repeats of pieces `sizes` wide (GPT-NeoX's fused
    query_key_value: for each head, its q, k and v rows) -> one tensor per piece, each the
    groups' pieces in order (all heads' q rows, ...); inverse: interleave them back."""

    def __init__(self, dim: int, groups: int, sizes: Sequence[int]):
        self.dim, self.groups, self.sizes = int(dim), int(groups), [int(s) for s in sizes]

    def forward(self, ts: Tensors) -> Tensors:
        t = _one(ts, self.name)
        if self.groups < 1 or t.shape[self.dim] != self.groups * sum(self.sizes):
            raise FormatError(f"split_interleaved: dim {self.dim} has {t.shape[self.dim]}, not {self.groups} groups "
                              f"of {self.sizes}")
        g = t.movedim(self.dim, 0).reshape(self.groups, sum(self.sizes), *t.movedim(self.dim, 0).shape[1:])
        return [p.reshape(-1, *p.shape[2:]).movedim(0, self.dim) for p in torch.split(g, self.sizes, 1)]

    def inverse(self, ts: Tensors) -> Tensors:
        if len(ts) != len(self.sizes):
            raise FormatError(f"split_interleaved: {len(ts)} tensors for {len(self.sizes)} pieces")
        parts = [t.movedim(self.dim, 0) for t in ts]
        g = torch.cat([p.reshape(self.groups, -1, *p.shape[1:]) for p in parts], 1)
        return [g.reshape(-1, *g.shape[2:]).movedim(0, self.dim)]


class Chain(Transform):
    """Transforms applied in order on import, inverses in reverse order on export."""

    name = "chain"

    def __init__(self, steps: Sequence[Transform] = ()):
        self.steps = list(steps)

    def forward(self, ts: Tensors) -> Tensors:
        for s in self.steps:
            ts = s.forward(ts)
        return ts

    def inverse(self, ts: Tensors) -> Tensors:
        for s in reversed(self.steps):
            ts = s.inverse(ts)
        return ts

    def __repr__(self) -> str:
        return " -> ".join(map(repr, self.steps)) or "identity"


def resolve(value: Any, sizes: dict[str, int], where: str) -> Any:
    """A YAML parameter: an int, a list, or the name of a size (`n_heads`, `kv_out` …)."""
    if isinstance(value, list):
        return [resolve(v, sizes, where) for v in value]
    if isinstance(value, str):
        if value not in sizes:
            raise FormatError(f"{where}: unknown size {value!r}; known: {', '.join(sorted(sizes))}")
        return sizes[value]
    return value


def build(step: Any, sizes: dict[str, int], where: str) -> Transform:
    """One YAML step (`transpose`, `{rope_permute: {heads: n_heads}}`) -> a Transform."""
    if isinstance(step, str):
        name, params = step, {}
    elif isinstance(step, dict) and len(step) == 1:
        name, params = next(iter(step.items()))
        params = params or {}
    else:
        raise FormatError(f"{where}: a transform is a name or {{name: {{params}}}}, got {step!r}")
    if name not in REGISTRY:
        from ..compiler.errors import close_matches

        hint = close_matches(name, REGISTRY)
        raise FormatError(f"{where}: unknown transform {name!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                          + f" (known: {', '.join(sorted(REGISTRY))})")
    if not isinstance(params, dict):
        raise FormatError(f"{where}: parameters of {name} must be a mapping, got {params!r}")
    try:
        return REGISTRY[name](**{k: resolve(v, sizes, where) for k, v in params.items()})
    except TypeError as e:
        raise FormatError(f"{where}: bad parameters for {name}: {e}") from None
