"""A decoder that reads images (arch kind `vision-language`, Pixtral): the vision encoder's
patch features, through the adapter, replace the prompt's image tokens (one per patch, in
order). Its decoder is its child `text`: an ordinary decoder spec, in a file usually
`text: {extends: NAME}` (model NAME's arch)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from pydantic import Field, model_validator

from ...runtime.modules.multimodal import VisionLanguageConfig, VisionLanguageLM
from ..ir import Dim, Node
from ..registry import FieldError, Kind, Slot, register
from ..values import TokenId
from .decoder import Decoder
from .vision import MLPAdapter


@register
class VisionLanguage(Kind):
    slots = ("arch",)
    kind: Literal["vision-language"] = "vision-language"
    vision: Annotated[Kind, Slot("vision")]
    adapter: Annotated[Kind, Slot("adapter", default="mlp")] = Field(default_factory=MLPAdapter)
    text: Decoder
    image_token_id: TokenId = Field(description="[IMG]: replaced by one patch feature each")
    image_break_id: TokenId | None = Field(None, description="[IMG_BREAK]: ends each row of patches")
    image_end_id: TokenId | None = Field(None, description="[IMG_END]: ends an image")

    @model_validator(mode="after")
    def _check(self) -> "VisionLanguage":
        for key in ("image_token_id", "image_break_id", "image_end_id"):
            v = getattr(self, key)
            if v is not None and v >= self.text.vocab_size:
                raise FieldError((key,), f"{v} is not below the text vocab_size ({self.text.vocab_size})")
        if self.text.heads.head_blocks:  # type: ignore[attr-defined]
            raise FieldError(("text", "heads"), "a vision-language model has one next-token head")
        return self

    def language_model(self) -> Decoder:
        """The decoder that reads and writes tokens."""
        return self.text

    @property
    def adapter_hidden_dim(self) -> int:
        return self.adapter.hidden_dim or self.text.dim  # type: ignore[attr-defined]

    def summary(self, accounting: Any = None) -> list[tuple[str, str]]:
        """The decoder's lines, then the image side (and the parameters by part)."""
        tokens = f"[IMG] {self.image_token_id}"
        tokens += f", [IMG_BREAK] {self.image_break_id}" if self.image_break_id is not None else ""
        tokens += f", [IMG_END] {self.image_end_id}" if self.image_end_id is not None else ""
        lines = self.text.summary() + [
            ("vision", self.vision.describe()),
            ("adapter", f"{self.vision.dim} -> {self.adapter_hidden_dim} -> {self.text.dim}, "  # type: ignore[attr-defined]
                        f"{self.adapter.activation}" + (", biases" if self.adapter.bias else "")),  # type: ignore[attr-defined]
            ("image tokens", tokens)]
        if accounting is not None:
            by = accounting.params_by_part
            text = accounting.params - by.get("vision", 0) - by.get("adapter", 0)
            lines.append(("parts", f"vision {by.get('vision', 0):,} + adapter {by.get('adapter', 0):,} + text {text:,}"))
        return lines

    # ------------------------------------------------------------------ phases
    def ir(self, path: str, ctx: Any = None) -> Node:
        """The vision encoder under `vision.`, the adapter under `adapter.`, and the decoder's
        nodes with their plain-decoder names (its node is the child `text` with an empty
        prefix), so a text-only format or check reads the language model unchanged."""
        text = self.text.ir(path, None)
        text.name = "text"
        vision = self.vision.ir("vision")
        adapter = self.adapter.ir("adapter", (Dim("vision_dim", self.vision.dim), Dim("dim", self.text.dim)))  # type: ignore[attr-defined]
        return Node(self, path, children=[vision, adapter, text])

    def config(self, node: Node) -> VisionLanguageConfig:
        """The runtime record of this model's IR node."""
        vision, adapter, text = (node.child(n) for n in ("vision", "adapter", "text"))
        return VisionLanguageConfig(vision.spec.lower(vision), adapter.spec.lower(adapter), self.text.config(text),
                                    self.image_token_id, self.image_break_id, self.image_end_id)

    def lower(self, node: Node, backend: Any) -> torch.nn.Module:
        with torch.device("meta"):
            return VisionLanguageLM(self.config(node), backend)
