"""Lowering of a vision-language IR: kernels for the vision side (the text side is the
decoder's), and the runtime module built on the meta device."""

from __future__ import annotations

import torch

from ..runtime.backends import Backend
from ..runtime.config import AdapterConfig, NormConfig, VisionEncoderConfig, VisionLanguageConfig
from ..runtime.modules.multimodal import VisionLanguageLM
from .ir import Node
from .ir_vision import text_view
from .lowering import KernelChoice, block_config, decoder_config


def vision_kernels(ir: Node, backend: Backend) -> list[KernelChoice]:
    """The vision encoder's and adapter's ops, one line per role (layers collapsed)."""
    arch = ir.attrs["spec"]
    enc, ad = arch.vision, arch.adapter
    last = f"0-{enc.n_layers - 1}" if enc.n_layers > 1 else "0"
    blocks = f"vision.blocks.{last}"
    norm = enc.norm
    norm_kernel = ("float32 rsqrt(mean(x^2)+eps), cast back" if norm.kind == "rmsnorm" else "torch layer_norm")
    ffn = enc.block().ffn
    act = {"swiglu": "silu"}.get(ffn.kind, getattr(ffn, "activation", ""))
    p, g = enc.patch_size, enc.grid
    return [
        KernelChoice("vision.patch_conv", "patch_embed", f"conv2d {p}x{p} stride {p}, one per image",
                     f"images of any size up to {enc.image_size}px, sides multiples of {p}"),
        KernelChoice("vision.ln_pre", norm.kind, norm_kernel, "before the first block"),
        KernelChoice(f"{blocks}.attn.rope", "rope-2d", "half-split rotate, cos/sin per patch (row, column)",
                     f"theta={enc.attention.rope.theta:g}, grid up to {g}x{g}"),
        KernelChoice(f"{blocks}.attn", "attention", backend.block_diagonal_kernel(),
                     f"backend {backend.name} (bidirectional; images packed in one sequence attend within themselves)"),
        KernelChoice(f"{blocks}.attn_norm", norm.kind, norm_kernel, "pre-norm"),
        KernelChoice(f"{blocks}.ffn_norm", norm.kind, norm_kernel, "pre-norm"),
        KernelChoice(f"{blocks}.ffn", ffn.kind, f"{3 if ffn.kind in ('swiglu', 'geglu') else 2} matmuls + {act}",
                     "torch linear"),
        KernelChoice("adapter", "adapter", f"2 matmuls + {ad.activation}" + (" (biases)" if ad.bias else ""),
                     f"vision width {enc.dim} -> text width {arch.text.dim}; features replace [IMG] tokens"),
    ]


def vision_language_config(ir: Node) -> VisionLanguageConfig:
    arch = ir.attrs["spec"]
    enc = arch.vision
    blk = block_config(enc.block())
    vision = VisionEncoderConfig(enc.dim, enc.patch_size, enc.grid, (blk,) * enc.n_layers,
                                 NormConfig(enc.norm.kind, enc.norm.eps, getattr(enc.norm, "bias", False)),
                                 enc.attention.rope.theta, enc.channels, enc.patch_bias)
    ad = arch.adapter
    adapter = AdapterConfig(enc.dim, arch.adapter_hidden_dim, arch.text.dim, ad.activation, ad.bias)
    return VisionLanguageConfig(vision, adapter, decoder_config(text_view(ir)), arch.image_token_id,
                                arch.image_break_id, arch.image_end_id)


def lower_vision_language(ir: Node, backend: Backend) -> VisionLanguageLM:
    cfg = vision_language_config(ir)
    with torch.device("meta"):
        model = VisionLanguageLM(cfg, backend)
    expected = dict(ir.parameters())
    got = dict(model.named_parameters())
    if set(expected) != set(got):
        raise AssertionError(f"lowering mismatch: {sorted(set(expected) ^ set(got))[:5]}")
    bad = [k for k, p in expected.items() if tuple(got[k].shape) != p.sizes]
    if bad:
        raise AssertionError(f"lowering shape mismatch: {bad[:5]}")
    return model
