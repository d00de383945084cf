"""The runtime modules the compiler's kinds lower to; each module's config lives beside it."""

from .attention import Attention, AttentionConfig
from .build import Build
from .decoder import Block, BlockConfig, CausalLM, DecoderConfig

__all__ = ["Attention", "AttentionConfig", "Block", "BlockConfig", "Build", "CausalLM", "DecoderConfig"]
