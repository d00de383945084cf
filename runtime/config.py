"""Plain configuration records the compiler's lowering hands to the runtime modules."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RopeConfig:
    theta: float = 10000.0
    scaling_factor: float | None = None  # linear position interpolation


@dataclass(frozen=True)
class AttentionConfig:
    n_heads: int
    n_kv_heads: int
    head_dim: int
    qkv_bias: bool = False
    o_bias: bool = False
    sliding_window: int | None = None
    rope: RopeConfig | None = field(default_factory=RopeConfig)


@dataclass(frozen=True)
class FFNConfig:
    kind: str  # "gated" | "mlp"
    hidden_dim: int
    activation: str = "silu"
    bias: bool = False


@dataclass(frozen=True)
class NormConfig:
    kind: str  # "rmsnorm" | "layernorm"
    eps: float = 1e-5
    bias: bool = False


@dataclass(frozen=True)
class BlockConfig:
    attention: AttentionConfig
    ffn: FFNConfig
    norm: NormConfig


@dataclass(frozen=True)
class DecoderConfig:
    vocab_size: int
    dim: int
    max_seq_len: int
    blocks: tuple[BlockConfig, ...]
    norm: NormConfig
    tie_embeddings: bool = False
    # multi-token prediction: one block per future token, each applied to the trunk's output
    head_blocks: tuple[BlockConfig, ...] = ()

    @property
    def n_layers(self) -> int:
        return len(self.blocks) + len(self.head_blocks)
