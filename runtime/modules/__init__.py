"""One nn.Module per IR node kind."""

from .attention import Attention
from .decoder import Block, CausalLM
from .ffn import build_ffn
from .norm import build_norm

__all__ = ["Attention", "Block", "CausalLM", "build_ffn", "build_norm"]
