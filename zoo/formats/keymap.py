"""Formats as data: a YAML key map (specs/formats/NAME.yaml) bound to one model's IR.

A format file says, per canonical parameter, which tensor(s) of the format hold it and which
named transforms (transforms.py) turn one into the other, written in the import direction:

    name: meta
    storage: meta-pth            # how tensors are stored: safetensors | meta-pth | gguf
    ignore: [rope.freqs]         # tensors a checkpoint may carry that hold no weights
    keys:                        # canonical -> external; {i} is the layer index
      norm.weight: norm.weight
      blocks.{i}.attn.q.weight:
        name: layers.{i}.attention.wq.weight
        transforms: [{rope_permute: {heads: n_heads}}]
        shard_dim: 0             # model-parallel shards concatenate on this dim (meta only)
    groups:                      # many <-> many: fused tensors (quote names inside [ ] or { })
      - canonical: ["blocks.{i}.attn.q.weight", "blocks.{i}.attn.k.weight", "blocks.{i}.attn.v.weight"]
        external: ["layers.{i}.qkv.weight"]
        transforms: [{split: {dim: 0, sizes: [q_out, kv_out, kv_out]}}]

`{v}` is the layer index of a vision-language model's vision encoder (`vision.blocks.{v}`):
its rules run over the encoder's layers, and size names (`n_heads`, `q_out` …) are the vision
block's. In external names, `{e}` is the expert index of an MoE layer: a name holding it stands for
one tensor per expert, in order (`experts.{e}.w1.weight` -> experts.0.w1.weight, …), to be
`stack`ed into the zoo's stacked expert weights. `alternatives:` names other formats that hold
the same model under other names (transformers 5's fused experts); loading picks the first
whose tensor names the checkpoint has (`Checkpoint.plan`).

A format may `extends:` another (its keys win) and add `stacks`: further canonical block stacks
(multi-token heads) mapped by rewriting every per-layer rule's `blocks.{i}` / `layer_prefix`:

    extends: meta
    stacks:                      # heads.0 is Meta's last layer; heads 1.. are extra_heads
      - {canonical: "heads.{j}", external: "layers.{trunk}", first: 0, last: 0}
      - {canonical: "heads.{j}", external: "extra_heads.{j-1}", first: 1}

Binding a format to an IR expands `{i}`, drops rules whose parameters the model lacks (biases,
`output` when embeddings are tied) and insists every parameter is covered exactly once, so a
format that cannot hold a model says so before any tensor moves. The external names and shapes
a checkpoint must have are computed by running the inverse transforms on meta tensors: no
shape arithmetic is written twice, and import, export and checking cannot disagree.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
import yaml

from ..catalog import search_roots
from ..checkpoint import KeyReport, compare_keys
from ..compiler.errors import close_matches
from ..compiler.ir import build_ir
from ..compiler.schema import ModelSpec
from .transforms import Chain, FormatError, build

STORAGES = ("safetensors", "meta-pth", "gguf")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_EXPR = re.compile(r"\{(\w+)([+-]\d+)?\}")


@dataclass(frozen=True)
class Stack:
    """Another stack of blocks (heads.{j}) laid out like the per-layer rules, under other names."""

    canonical: str  # replaces "blocks.{i}" in canonical names; may use {j}
    external: str  # replaces the format's layer_prefix; may use {j}, {j-1}, {trunk}
    first: int = 0
    last: int | None = None


def _subst(pattern: str, env: Mapping[str, int]) -> str:
    """{name} and {name+k}/{name-k} from env."""
    def one(m: re.Match[str]) -> str:
        if m.group(1) not in env:
            raise FormatError(f"unknown placeholder {{{m.group(1)}}} in {pattern!r}; known: {sorted(env)}")
        return str(env[m.group(1)] + int(m.group(2) or 0))
    return _EXPR.sub(one, pattern)


@dataclass(frozen=True)
class Rule:
    canonical: tuple[str, ...]
    external: tuple[str, ...]
    transforms: tuple[Any, ...] = ()
    shard_dim: int | None = None


@dataclass(frozen=True)
class Format:
    name: str
    storage: str
    rules: tuple[Rule, ...]
    ignore: tuple[str, ...] = ()
    description: str = ""
    source: str = "<format>"
    stacks: tuple[Stack, ...] = ()
    layer_prefix: str = "layers.{i}"
    alternatives: tuple[str, ...] = ()  # other layouts of the same models (not inherited)

    def ignored(self, external_name: str) -> bool:
        return any(re.fullmatch(_glob(p), external_name) for p in self.ignore)


def _glob(pattern: str) -> str:
    return ".*".join(re.escape(part) for part in pattern.split("*"))


def formats_roots() -> list[Path]:
    """Where key maps are found: `formats/` of every ZOO_PATH folder, then the package's."""
    return [root / "formats" for root in search_roots()]


def format_names() -> list[str]:
    return sorted({p.stem for root in formats_roots() for p in root.glob("*.yaml")})


def get_format(name: str) -> Format:
    """A format by name (the file formats/NAME.yaml in the search path, the first found), or
    by the path of a YAML file (`./formats/my-layout.yaml`)."""
    return _get_format(name, tuple(formats_roots()))


@functools.lru_cache(maxsize=None)
def _get_format(name: str, roots: tuple[Path, ...]) -> Format:
    if name.endswith((".yaml", ".yml")):
        path = Path(name).expanduser()
        if not path.is_file():
            raise FormatError(f"no format file {name}")
    else:
        path = next((p for p in (root / f"{name}.yaml" for root in roots) if _is_file(p)), roots[-1] / f"{name}.yaml")
    if not path.is_file():
        hint = close_matches(name, format_names())
        raise FormatError(f"unknown weights format {name!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                          + f" (known: {', '.join(format_names())})")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise FormatError(f"{path}: not valid YAML: {e}") from None
    if isinstance(data, dict) and "extends" in data:
        parent = get_format(str(data["extends"]))
        data = {k: v for k, v in data.items() if k != "extends"}
        merged = parse_format(data, str(path), parent)
        return merged
    return parse_format(data, str(path))


def _is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except (OSError, ValueError):  # a name the OS refuses
        return False


def parse_format(data: Any, source: str = "<format>", parent: Format | None = None) -> Format:
    """A Format from its YAML document (validated: unknown keys are errors, not silence);
    with a parent, the parent's rules come first and the child's replace those they rename."""
    if not isinstance(data, dict):
        raise FormatError(f"{source}: a format file is a mapping")
    extra = set(data) - {"name", "storage", "description", "ignore", "keys", "groups", "stacks", "layer_prefix",
                         "alternatives"}
    if extra:
        raise FormatError(f"{source}: unknown keys {sorted(extra)}")
    stacks = []
    for n, st in enumerate(data.get("stacks") or ()):
        if not isinstance(st, dict) or set(st) - {"canonical", "external", "first", "last"} or \
                not {"canonical", "external"} <= set(st):
            raise FormatError(f"{source}: stacks[{n}]: expected canonical, external, first, last")
        stacks.append(Stack(str(st["canonical"]), str(st["external"]), int(st.get("first", 0)),
                            None if st.get("last") is None else int(st["last"])))
    if parent is not None:
        data = {"storage": parent.storage, "description": parent.description, **data}
    storage = data.get("storage", "safetensors")
    if storage not in STORAGES:
        raise FormatError(f"{source}: storage {storage!r}; expected one of {STORAGES}")
    rules = []
    for canon, ext in (data.get("keys") or {}).items():
        if isinstance(ext, str):
            ext = {"name": ext}
        if not isinstance(ext, dict) or set(ext) - {"name", "transforms", "shard_dim"} or "name" not in ext:
            raise FormatError(f"{source}: keys.{canon}: expected an external name or {{name, transforms, shard_dim}}")
        rules.append(Rule((canon,), (ext["name"],), tuple(ext.get("transforms") or ()), ext.get("shard_dim")))
    for n, g in enumerate(data.get("groups") or ()):
        if not isinstance(g, dict) or set(g) - {"canonical", "external", "transforms"} or not g.get("canonical") \
                or not g.get("external"):
            raise FormatError(f"{source}: groups[{n}]: expected canonical: [..], external: [..], transforms: [..]")
        rules.append(Rule(tuple(g["canonical"]), tuple(g["external"]), tuple(g.get("transforms") or ())))
    if parent is not None:
        mine = {c for r in rules for c in r.canonical}
        rules = [r for r in parent.rules if not set(r.canonical) & mine] + rules
        ignore = tuple(parent.ignore) + tuple(data.get("ignore") or ())
        stacks = list(parent.stacks) + stacks
    else:
        ignore = tuple(data.get("ignore") or ())
    prefix = str(data.get("layer_prefix", parent.layer_prefix if parent else "layers.{i}"))
    return Format(str(data.get("name", Path(source).stem)), storage, tuple(rules), ignore,
                  str(data.get("description", "")), source, tuple(stacks), prefix,
                  tuple(str(a) for a in data.get("alternatives") or ()))


def vision_layers(spec: ModelSpec) -> int:
    """Layers of the vision encoder (0 for a text-only model)."""
    vision = getattr(spec.arch, "vision", None)
    return vision.n_layers if vision is not None else 0


def layer_sizes(spec: ModelSpec, layer: int, vision: bool = False) -> dict[str, int]:
    """The sizes a transform parameter may name, for one layer (of the vision encoder with
    `vision`: its width, heads and FFN)."""
    text = spec.arch.language_model()
    blk = spec.arch.vision.block() if vision else text.block(layer)
    att = blk.attention
    assert att.head_dim is not None and att.n_kv_heads is not None
    return {"layer": layer, "dim": spec.arch.vision.dim if vision else text.dim, "vocab": text.vocab_size,
            "n_heads": att.n_heads,
            "n_kv_heads": att.n_kv_heads,
            "head_dim": att.head_dim, "q_out": att.n_heads * att.head_dim, "kv_out": att.n_kv_heads * att.head_dim,
            "hidden": blk.ffn.hidden_dim or 0, "n_experts": getattr(blk.ffn, "n_experts", 0)}


@dataclass
class Binding:
    """One rule instantiated for one layer (or once, for model-wide tensors)."""

    canonical: list[str]
    external: list[str]
    chain: Chain
    shard_dim: int | None

    def to_canonical(self, ts: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return self.chain.forward(list(ts))

    def to_external(self, ts: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return self.chain.inverse(list(ts))


class Plan:
    """A format bound to one model: every canonical parameter in exactly one binding."""

    def __init__(self, fmt: Format, bindings: list[Binding], canonical_shapes: Mapping[str, tuple[int, ...]]):
        self.format, self.bindings, self.canonical_shapes = fmt, bindings, dict(canonical_shapes)

    def external_shapes(self) -> dict[str, tuple[int, ...]]:
        """What a checkpoint in this format must hold: external name -> shape."""
        out = {}
        for b in self.bindings:
            if not b.chain.steps:  # identity: the shapes are the canonical ones
                out.update(zip(b.external, (tuple(self.canonical_shapes[c]) for c in b.canonical)))
                continue
            metas = [torch.empty(self.canonical_shapes[c], device="meta") for c in b.canonical]
            try:
                ext = b.to_external(metas)
            except (RuntimeError, FormatError) as e:
                raise FormatError(f"{self.format.source}: {b.canonical} -> {b.external}: {e}") from None
            out.update({n: tuple(t.shape) for n, t in zip(b.external, ext)})
        return out

    def shard_dims(self) -> dict[str, int | None]:
        return {e: b.shard_dim for b in self.bindings for e in b.external}

    def check(self, found: Mapping[str, tuple[int, ...]]) -> KeyReport:
        """Every missing, unexpected and wrong-shaped tensor at once, in the format's own names."""
        return compare_keys(self.external_shapes(), {k: v for k, v in found.items() if not self.format.ignored(k)})

    def to_canonical(self, get: Callable[[str], torch.Tensor]) -> Iterator[tuple[Binding, list[torch.Tensor]]]:
        """Per binding: the canonical tensors made from the external ones `get` returns."""
        for b in self.bindings:
            yield b, b.to_canonical([get(n) for n in b.external])

    def to_external(self, state: Mapping[str, torch.Tensor]) -> Iterator[tuple[str, torch.Tensor]]:
        """External (name, tensor) pairs for a canonical state dict (export)."""
        for b in self.bindings:
            yield from zip(b.external, b.to_external([state[c] for c in b.canonical]))


def _expand(pattern: str, i: int | None) -> str:
    return pattern if i is None else pattern.replace("{i}", str(i))


def _per_expert(names: Sequence[str], n_experts: int) -> list[str]:
    """Each name holding {e} -> one name per expert, in order."""
    out: list[str] = []
    for n in names:
        out += [n.replace("{e}", str(e)) for e in range(n_experts)] if "{e}" in n else [n]
    return out


def bind(fmt: Format, spec: ModelSpec, canonical_shapes: Mapping[str, tuple[int, ...]]) -> Plan:
    """Bind `fmt` to a model whose parameters are `canonical_shapes` (canonical name -> sizes)."""
    n_layers = spec.arch.language_model().n_layers
    sizes = [layer_sizes(spec, i) for i in range(n_layers)]
    n_vision = vision_layers(spec)
    vision_sizes = [layer_sizes(spec, v, vision=True) for v in range(n_vision)]
    bindings, owner, seen_ext = [], {}, set()
    for rule in fmt.rules:
        names = rule.canonical + rule.external
        bad = {m for n in names for m in _PLACEHOLDER.findall(n)} - {"i", "v", "e"}
        if bad or any("{e}" in n for n in rule.canonical):
            raise FormatError(f"{fmt.source}: {names[0]}: unknown placeholder(s) {sorted(bad or {'e'})}; only {{i}} "
                              "(layer), {v} (vision layer) and, in external names, {e} (expert)")
        if any("{v}" in n for n in names):  # the vision encoder's layers, with its sizes
            if any("{i}" in n for n in names):
                raise FormatError(f"{fmt.source}: {names[0]}: a rule uses {{i}} or {{v}}, not both")
            names = tuple(n.replace("{v}", "{i}") for n in names)
            rule = Rule(names[:len(rule.canonical)], names[len(rule.canonical):], rule.transforms, rule.shard_dim)
            layers, rule_sizes = range(n_vision), vision_sizes
        else:
            layers, rule_sizes = range(n_layers), sizes
        per_layer = any("{i}" in n for n in names)
        for i in (layers if per_layer else [None]):
            canon = [_expand(c, i) for c in rule.canonical]
            present = [c in canonical_shapes for c in canon]
            if not any(present):
                continue  # the model has no such parameter (no bias, tied output …)
            where = f"{fmt.source}: {rule.canonical[0]}"
            if not all(present):
                raise FormatError(f"{where}: the model has only some of {canon}")
            layer_env = (rule_sizes if per_layer else sizes)[i if i is not None else 0]
            chain = Chain([build(s, layer_env, where) for s in rule.transforms])
            ext = _per_expert([_expand(e, i) for e in rule.external], layer_env["n_experts"])
            for c in canon:
                if c in owner:
                    raise FormatError(f"{where}: {c} is also mapped by the rule for {owner[c]}")
                owner[c] = rule.canonical[0]
            if seen_ext & set(ext):
                raise FormatError(f"{where}: external name(s) {sorted(seen_ext & set(ext))} are mapped twice")
            seen_ext |= set(ext)
            bindings.append(Binding(canon, ext, chain, rule.shard_dim))
    bindings += _stack_bindings(fmt, spec, canonical_shapes, owner, seen_ext)
    uncovered = sorted(set(canonical_shapes) - set(owner))
    if uncovered:
        raise FormatError(f"format {fmt.name} cannot hold {spec.name}: no rule for {', '.join(uncovered[:6])}"
                          + (" …" if len(uncovered) > 6 else "") + f" ({fmt.source})")
    return Plan(fmt, bindings, canonical_shapes)


def _stack_bindings(fmt: Format, spec: ModelSpec, canonical_shapes: Mapping[str, tuple[int, ...]],
                    owner: dict[str, str], seen_ext: set[str]) -> list[Binding]:
    """Per-layer rules re-instantiated for each extra stack (multi-token heads)."""
    text = spec.arch.language_model()
    n_stack = text.heads.head_blocks
    trunk = text.n_layers - n_stack
    out = []
    for st in fmt.stacks:
        last = n_stack - 1 if st.last is None else min(st.last, n_stack - 1)
        for j in range(st.first, last + 1):
            env = {"j": j, "trunk": trunk}
            canon_prefix, ext_prefix = _subst(st.canonical, env), _subst(st.external, env)
            for rule in fmt.rules:
                if not all(c.startswith("blocks.{i}.") for c in rule.canonical):
                    continue
                canon = [canon_prefix + c[len("blocks.{i}"):] for c in rule.canonical]
                if not all(c in canonical_shapes for c in canon):
                    continue
                lp = fmt.layer_prefix
                if not all(e.startswith(lp) for e in rule.external):
                    raise FormatError(f"{fmt.source}: {rule.external[0]} does not start with layer_prefix {lp!r}")
                ext = _per_expert([ext_prefix + e[len(lp):] for e in rule.external],
                                  layer_sizes(spec, trunk + j)["n_experts"])
                where = f"{fmt.source}: {canon[0]}"
                chain = Chain([build(s, layer_sizes(spec, trunk + j), where) for s in rule.transforms])
                for c in canon:
                    owner[c] = canon[0]
                if seen_ext & set(ext):
                    raise FormatError(f"{where}: external name(s) {sorted(seen_ext & set(ext))} are mapped twice")
                seen_ext |= set(ext)
                out.append(Binding(canon, ext, chain, rule.shard_dim))
    return out


def plan_for(fmt: Format | str, spec: ModelSpec) -> Plan:
    """Bind a format (or its name) to a spec's IR (built here: a tool's convenience; loading
    binds to the IR it compiled)."""
    fmt = get_format(fmt) if isinstance(fmt, str) else fmt
    return bind(fmt, spec, {n: p.sizes for n, p in build_ir(spec).parameters()})
