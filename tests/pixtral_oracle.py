"""Reference models for Pixtral parity: transformers' PixtralVisionModel and
LlavaForConditionalGeneration (Pixtral vision tower + Mistral decoder), configured like a zoo
vision-language spec and loaded (strict) with the zoo model's weights, float32, eager attention.

The zoo's RoPE is transformers' half-split layout in both towers (2-D in the vision encoder:
pairs 0..head_dim/4-1 by row, the rest by column), so the key map is a pure renaming: no q/k
permutation (that belongs to Mistral's consolidated format, whose layout is interleaved).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from tests.oracles import HF_BLOCK_NAMES

VISION_BLOCK_NAMES = {
    "attn_norm": "attention_norm",
    "ffn_norm": "ffn_norm",
    "attn.q": "attention.q_proj",
    "attn.k": "attention.k_proj",
    "attn.v": "attention.v_proj",
    "attn.o": "attention.o_proj",
    "ffn.gate": "feed_forward.gate_proj",
    "ffn.up": "feed_forward.up_proj",
    "ffn.down": "feed_forward.down_proj",
}
TOP_NAMES = {
    "vision.patch_conv.weight": "model.vision_tower.patch_conv.weight",
    "vision.ln_pre.weight": "model.vision_tower.ln_pre.weight",
    "adapter.w_in.weight": "model.multi_modal_projector.linear_1.weight",
    "adapter.w_in.bias": "model.multi_modal_projector.linear_1.bias",
    "adapter.w_out.weight": "model.multi_modal_projector.linear_2.weight",
    "adapter.w_out.bias": "model.multi_modal_projector.linear_2.bias",
    "embed.weight": "model.language_model.embed_tokens.weight",
    "norm.weight": "model.language_model.norm.weight",
    "output.weight": "lm_head.weight",
}


def hf_llava_name(name: str) -> str:
    """A zoo canonical name → its LlavaForConditionalGeneration (transformers ≥ 4.52) name."""
    if name in TOP_NAMES:
        return TOP_NAMES[name]
    if name.startswith("vision.blocks."):
        _, _, i, rest = name.split(".", 3)
        mod, _, leaf = rest.rpartition(".")
        return f"model.vision_tower.transformer.layers.{i}.{VISION_BLOCK_NAMES[mod]}.{leaf}"
    if name.startswith("blocks."):
        _, i, rest = name.split(".", 2)
        mod, _, leaf = rest.rpartition(".")
        return f"model.language_model.layers.{i}.{HF_BLOCK_NAMES[mod]}.{leaf}"
    raise KeyError(f"no transformers name for {name!r}")


def hf_state(model: Any) -> dict[str, torch.Tensor]:
    return {hf_llava_name(k): v.detach().float() for k, v in model.state_dict().items()}


def hf_vision_config(spec: Any) -> Any:
    from transformers import PixtralVisionConfig

    v = spec.arch.vision
    assert v.ffn.kind == "swiglu" and v.norm.kind == "rmsnorm" and v.norm.eps == 1e-5  # what transformers hardcodes
    return PixtralVisionConfig(hidden_size=v.dim, intermediate_size=v.ffn.hidden_dim, num_hidden_layers=v.n_layers,
                               num_attention_heads=v.attention.n_heads, num_channels=v.channels,
                               image_size=v.image_size, patch_size=v.patch_size, hidden_act="silu",
                               rope_parameters={"rope_type": "axial", "rope_theta": v.attention.rope.theta},
                               attn_implementation="eager")


def hf_llava_config(spec: Any) -> Any:
    from transformers import LlavaConfig, MistralConfig

    a = spec.arch
    t, blk = a.text, a.text.block(0)
    text = MistralConfig(vocab_size=t.vocab_size, hidden_size=t.dim, intermediate_size=blk.ffn.hidden_dim,
                         num_hidden_layers=t.n_layers, num_attention_heads=blk.attention.n_heads,
                         num_key_value_heads=blk.attention.n_kv_heads, head_dim=blk.attention.head_dim,
                         rms_norm_eps=blk.norm.eps, max_position_embeddings=t.max_seq_len, sliding_window=None,
                         rope_parameters={"rope_type": "default", "rope_theta": blk.attention.rope.theta},
                         tie_word_embeddings=t.tie_embeddings, hidden_act="silu", attn_implementation="eager",
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return LlavaConfig(vision_config=hf_vision_config(spec), text_config=text, image_token_index=a.image_token_id,
                       vision_feature_layer=-1, vision_feature_select_strategy="full", projector_hidden_act="gelu",
                       multimodal_projector_bias=a.adapter.bias, tie_word_embeddings=t.tie_embeddings,
                       attn_implementation="eager")


def hf_pixtral_vision_from(model: Any) -> Any:
    """A transformers PixtralVisionModel holding exactly `model.vision`'s weights."""
    from transformers import PixtralVisionModel

    ref = PixtralVisionModel(hf_vision_config(model.spec)).float().eval()
    prefix = "model.vision_tower."
    state = {k[len(prefix):]: v for k, v in hf_state(model).items() if k.startswith(prefix)}
    ref.load_state_dict(state, strict=True)
    return ref


def hf_llava_from(model: Any) -> Any:
    """A transformers LlavaForConditionalGeneration holding exactly `model`'s weights."""
    from transformers import LlavaForConditionalGeneration

    ref = LlavaForConditionalGeneration(hf_llava_config(model.spec)).float().eval()
    ref.load_state_dict(hf_state(model), strict=True)
    return ref


def padded_pixels(images: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' batch of images: zero-padded at the bottom and right to the largest, with
    each image's (height, width)."""
    h = max(int(i.shape[1]) for i in images)
    w = max(int(i.shape[2]) for i in images)
    out = torch.zeros(len(images), images[0].shape[0], h, w)
    for n, img in enumerate(images):
        out[n, :, :img.shape[1], :img.shape[2]] = img
    return out, torch.tensor([[int(i.shape[1]), int(i.shape[2])] for i in images])


def image_tokens(image: torch.Tensor, patch: int, img: int = 10, brk: int = 12, end: int = 13) -> list[int]:
    """Pixtral's tokens for one image: per row of patches, [IMG] x cols then [IMG_BREAK]; the
    last row ends with [IMG_END] instead."""
    rows, cols = int(image.shape[1]) // patch, int(image.shape[2]) // patch
    out: list[int] = []
    for r in range(rows):
        out += [img] * cols + [end if r == rows - 1 else brk]
    return out
