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
class MoEConfig:
    """Sparse mixture of experts: a router and n_experts FFNs of one shape, top_k per token."""

    n_experts: int
    top_k: int
    expert: FFNConfig  # bias-free
    aux_loss_coef: float = 0.01
    normalize_top_k: bool = True
    kind: str = "moe"

    @property
    def hidden_dim(self) -> int:
        return self.expert.hidden_dim


@dataclass(frozen=True)
class NormConfig:
    kind: str  # "rmsnorm" | "layernorm"
    eps: float = 1e-5
    bias: bool = False


@dataclass(frozen=True)
class BlockConfig:
    attention: AttentionConfig
    ffn: FFNConfig | MoEConfig
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


@dataclass(frozen=True)
class VisionEncoderConfig:
    """Patch Conv2d → ln_pre → bidirectional blocks with 2-D RoPE over a grid of at most
    max_grid x max_grid patches."""

    dim: int
    patch_size: int
    max_grid: int
    blocks: tuple[BlockConfig, ...]
    norm: NormConfig  # ln_pre
    rope_theta: float = 10000.0
    channels: int = 3
    patch_bias: bool = False


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
