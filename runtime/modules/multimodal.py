"""A decoder that reads images (Pixtral): the vision encoder's patch features, through the
adapter, take the places of the prompt's [IMG] tokens; everything after the embedding is the
ordinary decoder (blocks, KV cache, generation), so decoding after an image prompt is plain
text decoding against the cache.

Images are a flat list in the order their [IMG] tokens appear, row-major over the batch: the
first image's patches fill the first [IMG] positions of row 0, and so on (as transformers'
Llava does). `images=None` runs text only: [IMG] tokens are then embedded like any token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from ..backends.base import Backend
from ..kv_cache import KVCache
from .decoder import CausalLM, DecoderConfig
from .ffn import ACTIVATIONS
from .layers import Linear
from .vision import VisionEncoder, VisionEncoderConfig, VisionInputError


@dataclass(frozen=True)
class AdapterConfig:
    """w_out(act(w_in x)): vision width → hidden → text width."""

    in_dim: int
    hidden_dim: int
    out_dim: int
    activation: str = "gelu"
    bias: bool = True


@dataclass(frozen=True)
class VisionLanguageConfig:
    vision: VisionEncoderConfig
    adapter: AdapterConfig
    text: DecoderConfig
    image_token_id: int
    image_break_id: int | None = None
    image_end_id: int | None = None


class ImageTokenMismatch(VisionInputError):
    """The prompt's [IMG] tokens and the images' patches differ in number."""


class Adapter(nn.Module):
    """w_out(act(w_in x)): vision features to the text model's width."""

    def __init__(self, cfg: AdapterConfig):
        super().__init__()
        self.act = ACTIVATIONS[cfg.activation]
        self.w_in = Linear(cfg.in_dim, cfg.hidden_dim, bias=cfg.bias)
        self.w_out = Linear(cfg.hidden_dim, cfg.out_dim, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_out(self.act(self.w_in(x)))


class VisionLanguageLM(CausalLM):
    def __init__(self, cfg: VisionLanguageConfig, backend: Backend):
        super().__init__(cfg.text, backend)
        self.vl_cfg = cfg
        self.vision = VisionEncoder(cfg.vision, backend)
        self.adapter = Adapter(cfg.adapter)

    @torch.no_grad()
    def init_weights(self, std: float = 0.02, generator: torch.Generator | None = None) -> None:
        super().init_weights(std, generator)
        self.vision.patch_conv.weight.normal_(0.0, std, generator=generator)
        if self.vision.patch_conv.bias is not None:
            self.vision.patch_conv.bias.zero_()

    def image_features(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """(total patches, dim): every image's patch features in the text model's width."""
        return self.adapter(self.vision(images))

    def embed_with_images(self, tokens: torch.Tensor, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """Token embeddings (B, T, dim) with the [IMG] positions holding the images' features."""
        x = self.embed_tokens(tokens)
        is_image = tokens == self.vl_cfg.image_token_id
        n_tokens = int(is_image.sum())
        images = list(images)
        if not images:
            if n_tokens:
                raise ImageTokenMismatch(f"the prompt has {n_tokens} [IMG] tokens but no images were given")
            return x
        feats = self.image_features(images)
        if n_tokens != feats.shape[0]:
            p = self.vl_cfg.vision.patch_size
            sizes = ", ".join(f"{int(i.shape[-2])}x{int(i.shape[-1])}" for i in images)
            raise ImageTokenMismatch(f"the prompt has {n_tokens} [IMG] tokens (id {self.vl_cfg.image_token_id}) but "
                                     f"its {len(images)} image(s) ({sizes}) have {feats.shape[0]} patches of "
                                     f"{p}x{p}: one [IMG] per patch")
        x = x.clone()
        x[is_image] = feats.to(x.dtype)
        return x

    def forward(self, tokens: torch.Tensor, *, images: Sequence[torch.Tensor] | None = None,  # type: ignore[override]
                attention_mask: torch.Tensor | None = None, positions: torch.Tensor | None = None,
                cache: KVCache | None = None, segment_ids: torch.Tensor | None = None,
                last_only: bool = False) -> torch.Tensor:
        """Logits (B, T, vocab) in float32 (the last position's with `last_only`); `images` fill
        the [IMG] positions of `tokens`.
        Without images, a prompt (no cache, or an empty one) may hold no [IMG] token; decode
        steps against a filled cache may (a sampled [IMG] is then an ordinary token)."""
        if images is not None or cache is None or cache.length == 0:
            embeds = self.embed_with_images(tokens, images or [])
        else:
            embeds = None
        h = self.hidden_states(tokens, attention_mask=attention_mask, positions=positions, cache=cache,
                               segment_ids=segment_ids, embeds=embeds)
        return self.logits(h[:, -1:] if last_only else h)

    def loss(self, tokens: torch.Tensor, targets: torch.Tensor | None = None, *,  # type: ignore[override]
             images: Sequence[torch.Tensor] | None = None, attention_mask: torch.Tensor | None = None,
             ignore_index: int = -100) -> torch.Tensor:
        """Mean next-token cross-entropy; positions that predict an [IMG] token are ignored."""
        import torch.nn.functional as F

        if targets is None:
            targets = torch.full_like(tokens, ignore_index)
            targets[:, :-1] = tokens[:, 1:]
            if attention_mask is not None:
                targets[:, :-1] = targets[:, :-1].masked_fill(~attention_mask[:, 1:].bool(), ignore_index)
            targets = targets.masked_fill(targets == self.vl_cfg.image_token_id, ignore_index)
        logits = self(tokens, images=images, attention_mask=attention_mask)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=ignore_index)

    def generate(self, prompts: Any, max_new_tokens: int = 32, *, images: Sequence[torch.Tensor] | None = None,
                 **kw: Any) -> Any:
        """New tokens per prompt; `images` go into the prefill (decode steps read the cache)."""
        from ..generation import generate

        return generate(self, prompts, max_new_tokens=max_new_tokens,
                        prefill_kwargs=None if images is None else {"images": images}, **kw)
