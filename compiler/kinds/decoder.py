"""The decoder-only transformer (arch kind `decoder`): embed, blocks, final norm, output head.
Its blocks take the stack's components, with per-layer overrides by range."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, model_validator

from ...runtime.modules.decoder import DecoderConfig
from ..ir import Dim, Node, Scope, join
from ..registry import Cost, FieldError, KernelRow, Kind, Shard, Slot, Strict, register
from ..values import MAX_CONTEXT, MAX_LAYERS, MAX_VOCAB, Number, Size, Width
from .block import Block
from .heads import NextTokenHead
from .layout import PreNorm
from .norm import RMSNorm
from .ops import embedding_node, linear_node, linear_shard, require_divisible

_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*(?::\s*(\d+)\s*)?)?$")
_PART = r"\s*\d+\s*(-\s*\d+\s*(:\s*\d+\s*)?)?"
LAYER_RANGE_PATTERN = rf"^{_PART}(,{_PART})*$"
_SLOTS = ("attention", "ffn", "norm")


def parse_layer_range(text: str) -> list[int]:
    """'0-3' -> [0,1,2,3]; '5' -> [5]; '0-1,6' -> [0,1,6]; '0-9:2' -> [0,2,4,6,8] (every
    second layer: Gemma-2's sliding-window layers). Ranges are inclusive."""
    out: list[int] = []
    for part in str(text).split(","):
        m = _RANGE.match(part)
        if not m:
            raise ValueError(f"layer range {text!r} is not of the form 'A-B', 'A', 'A-B:step' or 'A-B,C'")
        lo, hi, step = int(m.group(1)), int(m.group(2) or m.group(1)), int(m.group(3) or 1)
        if hi < lo:
            raise ValueError(f"layer range {text!r} runs backwards")
        if step < 1:
            raise ValueError(f"layer range {text!r}: the step must be at least 1")
        out.extend(range(lo, hi + 1, step))
    return out


def layer_ranges(indices: list[int]) -> str:
    """The shortest-to-read range text for sorted layer indices: '0-3,7', or 'A-B:step' for an
    evenly spaced run (the inverse of `parse_layer_range`)."""
    if len(indices) > 2 and len({b - a for a, b in zip(indices, indices[1:])}) == 1 and indices[1] - indices[0] > 1:
        return f"{indices[0]}-{indices[-1]}:{indices[1] - indices[0]}"
    parts: list[str] = []
    for i in indices:
        if parts and "-" in parts[-1] and int(parts[-1].split("-")[1]) == i - 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{i}"
        elif parts and "-" not in parts[-1] and int(parts[-1]) == i - 1:
            parts[-1] = f"{parts[-1]}-{i}"
        else:
            parts.append(str(i))
    return ",".join(parts)


def _merged(base: Any, part: dict[str, Any]) -> dict[str, Any]:
    """`part` over `base` (a component's fields), nested mappings merged key by key."""
    out = dict(base)
    for k, v in part.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class LayerOverride(Strict):
    """Components that replace the stack's defaults on a range of layers. A component without
    `kind` (or of the stack's kind) changes only the fields it names; one of another kind
    replaces the stack's whole."""

    attention: Annotated[Kind | None, Slot("attention", default="attention")] = None
    ffn: Annotated[Kind | None, Slot("ffn")] = None
    norm: Annotated[Kind | None, Slot("norm")] = None


@register
class Decoder(Kind):
    """A decoder-only transformer: embed, pre-norm blocks, final norm, output head."""

    slots = ("arch",)
    kind: Literal["decoder"] = "decoder"
    dim: Width
    n_layers: Size(MAX_LAYERS)
    vocab_size: Size(MAX_VOCAB)
    max_seq_len: Size(MAX_CONTEXT) = 2048
    attention: Annotated[Kind, Slot("attention", default="attention")]
    ffn: Annotated[Kind, Slot("ffn")]
    norm: Annotated[Kind, Slot("norm")] = Field(default_factory=RMSNorm)
    tie_embeddings: bool = False
    layers: dict[str, LayerOverride] = Field(default_factory=dict, description="per-layer overrides by range",
                                             json_schema_extra={"propertyNames": {"pattern": LAYER_RANGE_PATTERN}})
    heads: Annotated[Kind, Slot("heads")] = Field(default_factory=NextTokenHead)
    layout: Annotated[Kind, Slot("layout", default="pre-norm")] = Field(
        default_factory=PreNorm, description="where every block's norms sit: pre-norm, sandwich, post-norm, parallel")
    embed_scale: Literal["sqrt_dim"] | Number(gt=0, le=1e6) | None = Field(
        None, description="token embeddings times this (Gemma: sqrt_dim)")
    logit_softcap: Number(gt=0, le=1e6) | None = Field(None, description="logits -> cap * tanh(logits / cap) (Gemma-2)")

    @model_validator(mode="before")
    @classmethod
    def _merge_overrides(cls, data: Any) -> Any:
        """A layer override of the stack's own kind keeps the stack's other fields:
        `layers: {"0-25:2": {attention: {sliding_window: 4096}}}` changes the window only."""
        if not isinstance(data, dict) or not isinstance(data.get("layers"), dict):
            return data
        layers = {}
        for key, over in data["layers"].items():
            if isinstance(over, dict):
                over = dict(over)
                for slot in _SLOTS:
                    part, base = over.get(slot), data.get(slot)
                    if isinstance(base, Kind):
                        base = base.model_dump()
                    if isinstance(part, dict) and isinstance(base, dict) and part.get("kind", base.get("kind")) == base.get("kind"):
                        over[slot] = _merged(base, part)
            layers[key] = over
        return {**data, "layers": layers}

    @model_validator(mode="after")
    def _check(self) -> "Decoder":
        """What needs more than one component: layer ranges against n_layers, and the sizes
        derived from dim, so that everything `block(i)` computes is valid (nothing fails later)."""
        owner: dict[int, str] = {}
        for key in self.layers:
            try:
                indices = parse_layer_range(key)
            except ValueError as e:
                raise FieldError(("layers", key), str(e)) from None
            for i in indices:
                if i >= self.n_layers:
                    raise FieldError(("layers", key), f"layer {i} is past the last layer ({self.n_layers - 1})")
                if i in owner:
                    raise FieldError(("layers", key), f"layer {i} is also in range {owner[i]!r}")
                owner[i] = key
        if self.heads.head_blocks > self.n_layers:  # type: ignore[attr-defined]
            at, why = self.heads.too_few_layers(self.n_layers)  # type: ignore[attr-defined]
            raise FieldError(("heads", *at), why)
        attentions = [(("attention",), self.attention)]
        attentions += [(("layers", k, "attention"), ov.attention) for k, ov in self.layers.items() if ov.attention]
        for at, attn in attentions:
            why = attn.width_problem(self.dim)  # type: ignore[attr-defined]
            if why:
                raise FieldError(at, why)
        ffns = [(("ffn",), self.ffn)] + [(("layers", k, "ffn"), ov.ffn) for k, ov in self.layers.items() if ov.ffn]
        for at, ffn in ffns:
            why = ffn.size_problem(self.dim)  # type: ignore[attr-defined]
            if why:
                raise FieldError(at, why)
        return self

    def language_model(self) -> "Decoder":
        """The decoder that reads and writes tokens: this one."""
        return self

    def block(self, i: int) -> Block:
        """Layer i's components with overrides applied and sizes derived."""
        attn, ffn, norm = self.attention, self.ffn, self.norm
        for key, ov in self.layers.items():
            if i in parse_layer_range(key):
                attn, ffn, norm = ov.attention or attn, ov.ffn or ffn, ov.norm or norm
        return Block(attention=attn.completed(self.dim), ffn=ffn.sized(self.dim), norm=norm,  # type: ignore[attr-defined]
                     layout=self.layout)

    def summary(self, accounting: Any = None) -> list[tuple[str, str]]:
        """(label, text) lines for `zoo show` and the model card."""
        blk = self.block(0)
        rope = blk.attention.rope
        lines = [("shape", f"dim {self.dim}, {self.n_layers} layers, {blk.attention.describe()}, "
                           f"{blk.ffn.describe()}, {blk.norm.describe()}"),
                 ("positions", f"{rope.describe() if rope else 'none'}; context {self.max_seq_len:,}; "
                               f"vocab {self.vocab_size:,}" + ("; tied embeddings" if self.tie_embeddings else ""))]
        extras = [self.layout.describe()] if self.layout.kind_name != "pre-norm" else []  # type: ignore[attr-defined]
        extras += [f"embeddings x {self.embed_scale}"] if self.embed_scale is not None else []
        extras += [f"logits soft-capped at {self.logit_softcap:g}"] if self.logit_softcap is not None else []
        if extras:
            lines.append(("blocks", "; ".join(extras)))
        if self.layers:
            lines.append(("overrides", "layers " + ", ".join(self.layers)))
        return lines + self.heads.summary(self.n_layers)  # type: ignore[attr-defined]

    @property
    def trunk_layers(self) -> int:
        """Blocks before the head blocks (all of them with a next-token head)."""
        return self.n_layers - self.heads.head_blocks  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ phases
    def ir(self, path: str, ctx: Any = None) -> Node:
        dim, vocab = Dim("dim", self.dim), Dim("vocab", self.vocab_size)
        scope = Scope(dim)
        trunk = self.trunk_layers
        blocks = [self.block(i).ir(join(path, f"blocks.{i}"), scope) for i in range(trunk)]
        # multi-token heads: the last layers, one block per future token, named heads.j
        heads = [self.block(trunk + j).ir(join(path, f"heads.{j}"), scope) for j in range(self.n_layers - trunk)]
        children = [embedding_node(join(path, "embed"), vocab, dim), *blocks, *heads, self.norm.ir(join(path, "norm"), scope)]
        if not self.tie_embeddings:
            children.append(linear_node(join(path, "output"), dim, vocab, bias=False, part="output"))
        return Node(self, path, children=children, attrs={"blocks": blocks, "heads": heads})

    def cost(self, node: Node, ctx: Any, inner: Cost) -> Cost:
        tied = 2 * self.vocab_size * self.dim if self.tie_embeddings else 0  # the output matmul reads embed
        return inner + Cost(flops=tied)

    def kernels(self, node: Node, backend: Any) -> list[KernelRow]:
        if self.tie_embeddings:
            return [KernelRow(join(node.path, "output"), "output", "matmul with embed.weight, logits in float32",
                              "tied embeddings", after_children=True)]
        return [KernelRow(join(node.path, "output"), "output", "matmul, logits in float32", "untied output head",
                          after_children=True)]

    def shard(self, node: Node, tp: int) -> dict[str, Shard]:
        """Vocab-parallel: each rank holds vocab/tp rows of the embedding (a lookup outside its
        rows gives zeros, summed across ranks) and of the output (its slice of the logits,
        gathered); the final norm is replicated (its kind's default)."""
        require_divisible(node.path, "vocab_size", self.vocab_size, tp, "embedding and output rows divide among the ranks")
        plan: dict[str, Shard] = {}
        for c in node.children:
            if c.name in ("embed", "output"):
                plan.update(linear_shard(c, "vocab"))
        return plan

    def config(self, node: Node) -> DecoderConfig:
        """The runtime record of this decoder's IR node."""
        blocks = tuple(b.spec.lower(b) for b in node.attrs["blocks"])
        heads = tuple(b.spec.lower(b) for b in node.attrs["heads"])
        scale = self.dim ** 0.5 if self.embed_scale == "sqrt_dim" else self.embed_scale
        return DecoderConfig(self.vocab_size, self.dim, self.max_seq_len, blocks, self.norm.lower(),
                             self.tie_embeddings, heads, scale, self.logit_softcap)

    def lower(self, node: Node, backend: Any) -> torch.nn.Module:
        with torch.device("meta"):
            return self.heads.runtime_model()(self.config(node), backend)  # type: ignore[attr-defined]
