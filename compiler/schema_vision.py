"""The spec language's vision-language kinds: a vision encoder over image patches, an adapter
into the text model's width, and the model that composes them with a decoder (Pixtral).

Imported by `schema.py` after the text components are defined (the `Arch` union lists
`VisionLanguage`), so import these names from `zoo.compiler.schema`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from .schema import FFN, Attention, Block, Decoder, FieldError, Norm, RMSNorm, Strict


class Rope2D(Strict):
    """Axial 2-D rotary embedding over the patch grid (Pixtral): of a head's frequencies
    1/theta^(2i/head_dim), the even-indexed rotate by the patch's row, the odd-indexed by its
    column (half-split layout: rows take pairs 0..head_dim/4-1, columns the rest)."""

    kind: Literal["rope-2d"] = "rope-2d"
    theta: PositiveFloat = 10000.0


class VisionAttention(Strict):
    """Bidirectional multi-head attention over patches; images attend only within themselves."""

    kind: Literal["attention"] = "attention"
    n_heads: PositiveInt
    head_dim: PositiveInt | None = Field(None, description="defaults to dim / n_heads")
    qkv_bias: bool = False
    o_bias: bool = False
    rope: Rope2D = Field(default_factory=Rope2D)


class VisionEncoder(Strict):
    """A ViT for images of any size up to image_size: patch Conv2d → ln_pre → pre-norm blocks
    (2-D RoPE, block-diagonal attention across the images of one call); no final norm."""

    kind: Literal["vision-encoder"] = "vision-encoder"
    dim: PositiveInt
    n_layers: PositiveInt
    image_size: PositiveInt = Field(description="largest image side in pixels: the RoPE grid is image_size/patch_size")
    patch_size: PositiveInt = 16
    channels: PositiveInt = 3
    patch_bias: bool = False
    attention: VisionAttention
    ffn: FFN
    norm: Norm = Field(default_factory=RMSNorm, description="ln_pre and the blocks' norms")

    @model_validator(mode="after")
    def _check(self) -> "VisionEncoder":
        if self.image_size % self.patch_size:
            raise FieldError(("image_size",), f"image_size ({self.image_size}) is not a multiple of patch_size "
                                              f"({self.patch_size})")
        a = self.attention
        if a.head_dim is None and self.dim % a.n_heads:
            raise FieldError(("attention",), f"dim ({self.dim}) is not divisible by n_heads ({a.n_heads}); "
                                             "give head_dim")
        if self.head_dim % 4:
            raise FieldError(("attention", "head_dim"), f"2-D RoPE needs head_dim divisible by 4, got {self.head_dim}")
        return self

    @property
    def head_dim(self) -> int:
        return self.attention.head_dim or self.dim // self.attention.n_heads

    @property
    def grid(self) -> int:
        """Patches per side of the largest image."""
        return self.image_size // self.patch_size

    def block(self) -> Block:
        """Every layer's components, sizes derived (RoPE is the encoder's, applied per image)."""
        a = self.attention
        attn = Attention(n_heads=a.n_heads, n_kv_heads=a.n_heads, head_dim=self.head_dim, qkv_bias=a.qkv_bias,
                         o_bias=a.o_bias, rope=None)
        return Block(attention=attn, ffn=self.ffn.sized(self.dim), norm=self.norm)


class MLPAdapter(Strict):
    """Vision features into the text model's width: w_out(act(w_in x))."""

    kind: Literal["mlp"] = "mlp"
    hidden_dim: PositiveInt | None = Field(None, description="defaults to the text model's dim")
    activation: Literal["gelu", "gelu_tanh", "relu", "silu"] = "gelu"
    bias: bool = True


class VisionLanguage(Strict):
    """A decoder that reads images: the vision encoder's patch features, through the adapter,
    replace the prompt's image tokens (one per patch, in order). `text` is an ordinary decoder
    spec; in a file it is usually `text: {extends: NAME}`, model NAME's `arch`.

    The text-side attributes (`dim`, `vocab_size`, `block(i)` …) read through to `text`, so code
    that runs or reports the language model reads this kind like a decoder."""

    kind: Literal["vision-language"] = "vision-language"
    vision: VisionEncoder
    adapter: MLPAdapter = Field(default_factory=MLPAdapter)
    text: Decoder
    image_token_id: NonNegativeInt = Field(description="[IMG]: replaced by one patch feature each")
    image_break_id: NonNegativeInt | None = Field(None, description="[IMG_BREAK]: ends each row of patches")
    image_end_id: NonNegativeInt | None = Field(None, description="[IMG_END]: ends an image")

    @model_validator(mode="after")
    def _check(self) -> "VisionLanguage":
        for key in ("image_token_id", "image_break_id", "image_end_id"):
            v = getattr(self, key)
            if v is not None and v >= self.text.vocab_size:
                raise FieldError((key,), f"{v} is not below the text vocab_size ({self.text.vocab_size})")
        if self.text.heads.kind != "next_token":
            raise FieldError(("text", "heads"), "a vision-language model has one next-token head")
        return self

    @property
    def adapter_hidden_dim(self) -> int:
        return self.adapter.hidden_dim or self.text.dim

    # the language model's attributes, read through
    @property
    def dim(self) -> int:
        return self.text.dim

    @property
    def n_layers(self) -> int:
        return self.text.n_layers

    @property
    def vocab_size(self) -> int:
        return self.text.vocab_size

    @property
    def max_seq_len(self) -> int:
        return self.text.max_seq_len

    @property
    def tie_embeddings(self) -> bool:
        return self.text.tie_embeddings

    @property
    def heads(self):  # type: ignore[no-untyped-def]
        return self.text.heads

    def block(self, i: int) -> Block:
        return self.text.block(i)
