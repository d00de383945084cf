"""The built-in component kinds, one class each, registered on import (members before the
kinds that contain them). A user's kind registers the same way: see docs/extending.md."""

from . import (  # noqa: F401
           attention,
           block,
           decoder,
           ffn,
           heads,
           layout,
           moe,
           norm,
           ops,
           position,
           vision,
           vision_language,
)
from .attention import Attention
from .block import Block
from .decoder import LAYER_RANGE_PATTERN, Decoder, LayerOverride, parse_layer_range
from .ffn import DenseFFN, GeGLU, GeluMLP, SwiGLU
from .heads import MultiTokenHead, NextTokenHead
from .moe import MoE, Router
from .norm import LayerNorm, RMSNorm
from .position import LinearScaling, Rope, Rope2D
from .vision import MLPAdapter, VisionEncoder
from .vision_language import VisionLanguage

__all__ = ["Attention", "Block", "Decoder", "DenseFFN", "GeGLU", "GeluMLP", "LAYER_RANGE_PATTERN", "LayerNorm",
           "LayerOverride", "LinearScaling", "MLPAdapter", "MoE", "MultiTokenHead", "NextTokenHead", "RMSNorm", "Rope",
           "Rope2D", "Router", "SwiGLU", "VisionEncoder", "VisionLanguage", "parse_layer_range"]
