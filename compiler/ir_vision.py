"""The IR of a vision-language model: the vision encoder under `vision.`, the adapter under
`adapter.`, and the decoder's nodes at the top level with their plain-decoder names, so a
text-only format or check reads the language model of a VLM unchanged."""

from __future__ import annotations

from .ir import Dim, Node, Param, block_node, decoder_ir, linear, norm_node
from .schema_vision import MLPAdapter, VisionEncoder, VisionLanguage

VISION_KINDS = ("vision_encoder", "adapter")


def vision_encoder_ir(enc: VisionEncoder, path: str = "vision") -> Node:
    dim = Dim("vision_dim", enc.dim)
    patch = Dim("patch", enc.patch_size)
    params = [Param("weight", (dim, Dim("channels", enc.channels), patch, patch))]
    if enc.patch_bias:
        params.append(Param("bias", (dim,), "zeros"))
    children = [Node("patch_embed", f"{path}.patch_conv", {"spec": enc}, params),
                norm_node(f"{path}.ln_pre", enc.norm, dim)]
    blk = enc.block()
    children += [block_node(i, blk, dim, f"{path}.blocks.{i}") for i in range(enc.n_layers)]
    return Node("vision_encoder", path, {"spec": enc}, [], children)


def adapter_ir(adapter: MLPAdapter, d_in: int, hidden: int, d_out: int, path: str = "adapter") -> Node:
    hid = Dim("adapter_hidden", hidden)
    return Node("adapter", path, {"spec": adapter}, [], [
        linear(f"{path}.w_in", Dim("vision_dim", d_in), hid, adapter.bias),
        linear(f"{path}.w_out", hid, Dim("dim", d_out), adapter.bias),
    ])


def vision_language_ir(arch: VisionLanguage) -> Node:
    text = decoder_ir(arch.text)
    children = [vision_encoder_ir(arch.vision),
                adapter_ir(arch.adapter, arch.vision.dim, arch.adapter_hidden_dim, arch.text.dim)]
    return Node("vision_language", "", {"spec": arch}, [], children + text.children)


def text_view(ir: Node) -> Node:
    """The decoder part of a vision-language IR, as a decoder IR (the same node objects)."""
    if ir.kind != "vision_language":
        return ir
    return Node("decoder", "", {**ir.attrs, "spec": ir.attrs["spec"].text},
                [], [c for c in ir.children if c.kind not in VISION_KINDS])


def vision_parts(ir: Node) -> list[Node]:
    """The vision encoder and adapter subtrees (empty for a text-only IR)."""
    return [c for c in ir.children if c.kind in VISION_KINDS]
