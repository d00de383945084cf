"""Lowering: bind kernels for a backend (with reasons) and build runtime modules on the meta
device. This is the only part of the compiler that imports the runtime."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..runtime import backends as backend_registry
from ..runtime.backends import Backend
from ..runtime.config import AttentionConfig, BlockConfig, DecoderConfig, FFNConfig, MoEConfig, NormConfig, RopeConfig
from ..runtime.modules import CausalLM
from ..runtime.modules.multi_token import MultiTokenLM
from .ir import Node
from .schema import Block


@dataclass(frozen=True)
class KernelChoice:
    op: str  # canonical path, with layer ranges collapsed: blocks.0-31.attn
    kind: str
    kernel: str
    why: str


@dataclass(frozen=True)
class BackendChoice:
    requested: str
    name: str
    available: bool
    why: str


def choose_backend(requested: str | None, device: torch.device | str) -> BackendChoice:
    device = torch.device(device)
    name = backend_registry.resolve_name(requested)
    if name == "auto":
        chosen, why = backend_registry.auto_choice(device)
        return BackendChoice("auto", chosen, True, why)
    if name not in backend_registry.names():
        return BackendChoice(name, name, False, f"unknown backend; known: {', '.join(backend_registry.names())}")
    avail = backend_registry.get(name, device, check=False).availability(device)
    return BackendChoice(name, name, avail.ok, f"{name}: {avail.reason}")


_INDEXED = re.compile(r"^(\w+)\.(\d+)\.(.+)$")


def _collapse(paths: list[str]) -> str:
    """blocks.0.attn … blocks.31.attn → blocks.0-31.attn (when contiguous)."""
    if len(paths) == 1:
        return paths[0]
    parts = [_INDEXED.match(p) for p in paths]
    idx = [int(m.group(2)) for m in parts if m]
    prefix, rest = parts[0].group(1), parts[0].group(3)  # type: ignore[union-attr]
    span = f"{min(idx)}-{max(idx)}" if idx == list(range(min(idx), max(idx) + 1)) else ",".join(map(str, idx))
    return f"{prefix}.{span}.{rest}"


def select_kernels(ir: Node, backend: Backend) -> list[KernelChoice]:
    """Each op of the IR, the kernel it runs on `backend`, and why."""
    if ir.kind == "vision_language":  # the vision side's ops, then the decoder's as for any decoder
        from .ir_vision import text_view
        from .lowering_vision import vision_kernels

        return vision_kernels(ir, backend) + select_kernels(text_view(ir), backend)
    groups: dict[tuple[str, str, str, str], list[str]] = {}

    def add(path: str, kind: str, kernel: str, why: str) -> None:
        m = _INDEXED.match(path)
        role = f"{m.group(1)}.{m.group(3)}" if m else path
        groups.setdefault((role, kind, kernel, why), []).append(path)

    for node in ir.walk():
        if node.kind == "embedding":
            add(node.path, "embedding", "torch.embedding (gather)", "a lookup, no backend-specific kernel")
        elif node.kind == "norm":
            spec = node.attrs["spec"]
            if spec.kind == "rmsnorm":
                add(node.path, "rmsnorm", "float32 rsqrt(mean(x^2)+eps), cast back", "LLaMA numerics: normalize in float32")
            else:
                add(node.path, "layernorm", "torch layer_norm", "fused by PyTorch")
        elif node.kind == "attention":
            a = node.attrs["spec"]
            if a.rope is not None:
                add(node.path + ".rope", "rope", "half-split rotate (cos/sin tables per forward)",
                    f"theta={a.rope.theta:g}" + (f", linear scaling x{a.rope.scaling.factor:g}" if a.rope.scaling else ""))
            traits = []
            if a.n_kv_heads != a.n_heads:
                traits.append("MQA" if a.n_kv_heads == 1 else f"GQA {a.n_heads}/{a.n_kv_heads}")
            if a.sliding_window:
                traits.append(f"window {a.sliding_window}")
            why = f"backend {backend.name}" + (f" ({', '.join(traits)})" if traits else "")
            add(node.path, "attention", backend.attention_kernel(), why)
        elif node.kind == "ffn":
            f = node.attrs["spec"]
            act = {"swiglu": "silu", "geglu": getattr(f, "activation", "gelu")}.get(f.kind, getattr(f, "activation", ""))
            add(node.path, f.kind, f"3 matmuls + {act}" if f.kind != "gelu-mlp" else f"2 matmuls + {act}", "matmuls: the linear kernel below")
        elif node.kind == "moe":
            f = node.attrs["spec"]
            add(node.path, "moe", f"router + top-{f.top_k} of {f.n_experts} {f.expert.kind} experts, sparse dispatch",
                "tokens grouped per expert, each expert runs only on its tokens, index_add back")
        elif node.kind == "linear" and node.path == "output":
            add(node.path, "output", "matmul, logits in float32", "untied output head")
    if ir.attrs["spec"].tie_embeddings:
        add("output", "output", "matmul with embed.weight, logits in float32", "tied embeddings")
    _, linear = backend.linear_kernel()
    add("*", "linear", linear, "every projection (q/k/v/o, ffn, output)")
    _, eltwise = backend.elementwise_kernels()
    add("*", "element-wise", eltwise, "norms, gated activations, rotary embeddings")
    _, step = backend.block_kernel()
    add("blocks.*", "decode step", step, "all blocks of a decode step in one call where it applies")
    out = []
    for (_, kind, kernel, why), paths in groups.items():
        plain = [p for p in paths if not _INDEXED.match(p)]
        stacked = [p for p in paths if _INDEXED.match(p)]
        if stacked:
            out.append(KernelChoice(_collapse(stacked), kind, kernel, why))
        out += [KernelChoice(p, kind, kernel, why) for p in plain]
    return out


def _rope(spec) -> RopeConfig | None:  # type: ignore[no-untyped-def]
    if spec is None:
        return None
    return RopeConfig(theta=spec.theta, scaling_factor=spec.scaling.factor if spec.scaling else None)


def _dense_ffn(f) -> FFNConfig:  # type: ignore[no-untyped-def]
    if f.kind == "swiglu":
        return FFNConfig("gated", f.hidden_dim, "silu", f.bias)
    if f.kind == "geglu":
        return FFNConfig("gated", f.hidden_dim, f.activation, f.bias)
    return FFNConfig("mlp", f.hidden_dim, f.activation, f.bias)


def block_config(blk: Block) -> BlockConfig:
    a, f, n = blk.attention, blk.ffn, blk.norm
    assert a.head_dim is not None and a.n_kv_heads is not None and f.hidden_dim is not None
    attn = AttentionConfig(a.n_heads, a.n_kv_heads, a.head_dim, a.qkv_bias, a.o_bias, a.sliding_window, _rope(a.rope))
    if f.kind == "moe":
        ffn = MoEConfig(f.n_experts, f.top_k, _dense_ffn(f.expert), f.router.aux_loss_coef, f.router.normalize_top_k)
    else:
        ffn = _dense_ffn(f)
    norm = NormConfig(n.kind, n.eps, getattr(n, "bias", False))
    return BlockConfig(attn, ffn, norm)


def decoder_config(ir: Node) -> DecoderConfig:
    arch = ir.attrs["spec"]
    blocks = tuple(block_config(n.attrs["spec"]) for n in ir.children if n.kind == "block" and n.path.startswith("blocks."))
    heads = tuple(block_config(n.attrs["spec"]) for n in ir.children if n.kind == "block" and n.path.startswith("heads."))
    top = arch.norm
    return DecoderConfig(arch.vocab_size, arch.dim, arch.max_seq_len, blocks,
                         NormConfig(top.kind, top.eps, getattr(top, "bias", False)), arch.tie_embeddings, heads)


def lower(ir: Node, backend: Backend) -> CausalLM:
    """Runtime modules on the meta device: nothing is allocated until weights arrive."""
    if ir.kind == "vision_language":
        from .lowering_vision import lower_vision_language

        model = lower_vision_language(ir, backend)
        model.set_backend(backend)  # binds the backend's kernels on every module
        return model
    cfg = decoder_config(ir)
    with torch.device("meta"):
        model = (MultiTokenLM if cfg.head_blocks else CausalLM)(cfg, backend)
    expected = dict(ir.parameters())
    got = dict(model.named_parameters())
    if set(expected) != set(got):  # the IR's canonical names are the runtime's keys, by construction
        raise AssertionError(f"lowering mismatch: {sorted(set(expected) ^ set(got))[:5]}")
    model.set_backend(backend)  # binds the backend's kernels on every module
    return model
