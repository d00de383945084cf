"""The IR: a tree of typed nodes mirroring the model, with one canonical name and a symbolic
shape per parameter. Canonical names are the zoo's own (they are the runtime's state_dict
keys); external layouts are reached through formats."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from .schema import Block, Decoder, ModelSpec


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
    kind: str
    path: str  # canonical prefix: "" for the root, "blocks.3.attn" …
    attrs: dict[str, Any] = field(default_factory=dict)
    params: list[Param] = field(default_factory=list)
    children: list["Node"] = field(default_factory=list)

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
            if c.path.rsplit(".", 1)[-1] == name:
                return c
        raise KeyError(f"{self.path or '<root>'} has no child {name!r}")

    @property
    def numel(self) -> int:
        return sum(p.numel for _, p in self.parameters())


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def linear(path: str, d_in: Dim, d_out: Dim, bias: bool) -> Node:
    params = [Param("weight", (d_out, d_in))]
    if bias:
        params.append(Param("bias", (d_out,), "zeros"))
    return Node("linear", path, {"in": d_in, "out": d_out}, params)


def norm_node(path: str, spec: Any, dim: Dim) -> Node:
    params = [Param("weight", (dim,), "ones")]
    if spec.kind == "layernorm" and spec.bias:
        params.append(Param("bias", (dim,), "zeros"))
    return Node("norm", path, {"spec": spec}, params)


def attention_node(path: str, blk: Block, dim: Dim) -> Node:
    a = blk.attention
    assert a.head_dim is not None and a.n_kv_heads is not None
    q_dim = Dim("heads*head_dim", a.n_heads * a.head_dim)
    kv_dim = Dim("kv_heads*head_dim", a.n_kv_heads * a.head_dim)
    children = [
        linear(_join(path, "q"), dim, q_dim, a.qkv_bias),
        linear(_join(path, "k"), dim, kv_dim, a.qkv_bias),
        linear(_join(path, "v"), dim, kv_dim, a.qkv_bias),
        linear(_join(path, "o"), q_dim, dim, a.o_bias),
    ]
    return Node("attention", path, {"spec": a}, [], children)


def moe_node(path: str, blk: Block, dim: Dim) -> Node:
    """A router linear [experts, dim] and the experts' stacked weights: experts.gate and
    experts.up [experts, hidden, dim] (no gate for gelu-mlp experts), experts.down [experts, dim, hidden]."""
    f = blk.ffn
    assert f.kind == "moe" and f.expert.hidden_dim is not None
    n, hidden = Dim("experts", f.n_experts), Dim("hidden", f.expert.hidden_dim)
    names = ("gate", "up") if f.expert.kind in ("swiglu", "geglu") else ("up",)
    params = [Param(p, (n, hidden, dim)) for p in names] + [Param("down", (n, dim, hidden))]
    experts = Node("experts", _join(path, "experts"), {"spec": f.expert, "n_experts": f.n_experts, "top_k": f.top_k},
                   params)
    return Node("moe", path, {"spec": f}, [], [linear(_join(path, "router"), dim, n, False), experts])


def ffn_node(path: str, blk: Block, dim: Dim) -> Node:
    f = blk.ffn
    if f.kind == "moe":
        return moe_node(path, blk, dim)
    assert f.hidden_dim is not None
    hidden = Dim("hidden", f.hidden_dim)
    if f.kind in ("swiglu", "geglu"):
        children = [linear(_join(path, "gate"), dim, hidden, f.bias), linear(_join(path, "up"), dim, hidden, f.bias),
                    linear(_join(path, "down"), hidden, dim, f.bias)]
    else:
        children = [linear(_join(path, "up"), dim, hidden, f.bias), linear(_join(path, "down"), hidden, dim, f.bias)]
    return Node("ffn", path, {"spec": f}, [], children)


def block_node(i: int, blk: Block, dim: Dim, path: str | None = None) -> Node:
    path = path or f"blocks.{i}"
    return Node("block", path, {"index": i, "spec": blk}, [], [
        norm_node(_join(path, "attn_norm"), blk.norm, dim),
        attention_node(_join(path, "attn"), blk, dim),
        norm_node(_join(path, "ffn_norm"), blk.norm, dim),
        ffn_node(_join(path, "ffn"), blk, dim),
    ])


def decoder_ir(arch: Decoder) -> Node:
    dim = Dim("dim", arch.dim)
    vocab = Dim("vocab", arch.vocab_size)
    children = [Node("embedding", "embed", {}, [Param("weight", (vocab, dim))])]
    n_heads = arch.heads.n_future if arch.heads.kind == "multi_token" else 0
    n_trunk = arch.n_layers - n_heads
    children += [block_node(i, arch.block(i), dim) for i in range(n_trunk)]
    # multi-token heads: the last n layers, one block per future token, named heads.j
    children += [block_node(n_trunk + j, arch.block(n_trunk + j), dim, f"heads.{j}") for j in range(n_heads)]
    children.append(norm_node("norm", arch.norm, dim))
    if not arch.tie_embeddings:
        children.append(linear("output", dim, vocab, bias=False))
    return Node("decoder", "", {"spec": arch}, [], children)


def build_ir(spec: ModelSpec) -> Node:
    """The IR of a validated spec. Sizes only: nothing is allocated."""
    if spec.arch.kind == "vision-language":
        from .ir_vision import vision_language_ir

        root = vision_language_ir(spec.arch)
    else:
        root = decoder_ir(spec.arch)
    root.attrs["model"] = spec.name
    return root
