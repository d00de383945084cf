"""The decoder-only language model: embed → pre-norm blocks → norm → output (logits in float32)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..backends.base import Backend, bind
from ..errors import UsageError
from ..kv_cache import KVCache
from ..mask import AttentionLayout
from .attention import Attention, AttentionConfig
from .build import Build
from .layers import Embedding, Linear
from .moe import record_routing
from .rope import rope_tables


@dataclass(frozen=True)
class BlockConfig:
    attention: AttentionConfig
    ffn: Build  # called with (dim)
    norm: Build  # called with (dim), once per norm
    layout: Build | None = None  # the block module, called with (dim, self, backend, layer); None: Block

    def build(self, dim: int, backend: Backend, layer: int) -> nn.Module:
        return (self.layout or Build.of(Block))(dim, self, backend, layer)


@dataclass(frozen=True)
class DecoderConfig:
    vocab_size: int
    dim: int
    max_seq_len: int
    blocks: tuple[BlockConfig, ...]
    norm: Build
    tie_embeddings: bool = False
    # multi-token prediction: one block per future token, each applied to the trunk's output
    head_blocks: tuple[BlockConfig, ...] = ()
    embed_scale: float | None = None  # token embeddings times this (Gemma: sqrt(dim)), in their dtype
    logit_softcap: float | None = None  # logits -> cap * tanh(logits / cap) (Gemma-2)

    @property
    def n_layers(self) -> int:
        return len(self.blocks) + len(self.head_blocks)


class Block(nn.Module):
    """h = x + attn(attn_norm(x)); out = h + ffn(ffn_norm(h))."""

    def __init__(self, dim: int, cfg: BlockConfig, backend: Backend, layer: int):
        super().__init__()
        self.attn_norm = cfg.norm(dim)
        self.attn = Attention(dim, cfg.attention, backend, layer)
        self.ffn_norm = cfg.norm(dim)
        self.ffn = cfg.ffn(dim)

    def forward(self, x: torch.Tensor, rope: Any, layout: AttentionLayout, cache: KVCache | None) -> torch.Tensor:
        h = x + self.attn(self.attn_norm(x), rope, layout, cache)
        return h + self.ffn(self.ffn_norm(h))


def segment_positions(segment_ids: torch.Tensor) -> torch.Tensor:
    """Positions that restart at 0 at every new segment of a packed row."""
    b, t = segment_ids.shape
    idx = torch.arange(t, device=segment_ids.device).expand(b, t)
    is_start = torch.ones_like(segment_ids, dtype=torch.bool)
    is_start[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
    start_idx = torch.where(is_start, idx, torch.zeros_like(idx)).cummax(dim=1).values
    return idx - start_idx


class CausalLM(nn.Module):
    def __init__(self, cfg: DecoderConfig, backend: Backend):
        super().__init__()
        self.cfg = cfg
        self.backend = backend
        self.embed = Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = nn.ModuleList(b.build(cfg.dim, backend, i) for i, b in enumerate(cfg.blocks))
        self.norm = cfg.norm(cfg.dim)
        self.output = None if cfg.tie_embeddings else Linear(cfg.dim, cfg.vocab_size, bias=False)

    # ------------------------------------------------------------------ setup
    _linear: Any = None  # the backend's linear kernel, for the output projection
    _step: Any = None  # the backend's kernel for a decode step through a run of blocks (or None)

    def set_backend(self, backend: Backend) -> None:
        """Bind `backend`'s kernels on every module (attention layers, linears, norms …)."""
        self.backend = backend
        kernels = bind(self, backend)
        self._linear, self._step = kernels.linear, kernels.step
        for mod in self.modules():  # RoPE keys now: torch.compile cannot trace a dataclass's repr
            if hasattr(getattr(mod, "attn", None), "cfg"):
                self.rope_key(mod)

    def on_tensor_parallel(self) -> None:
        """Split across ranks (runtime/distributed/tp.py): the backend's native decode step reads
        plain weights, so every step goes through the modules, where DTensor dispatches."""
        self._step = None

    @torch.no_grad()
    def init_weights(self, std: float = 0.02, generator: torch.Generator | None = None) -> None:
        """Random init for fresh models: N(0, std) matrices, zero biases, unit norms."""
        for mod in self.modules():
            if isinstance(mod, (nn.Linear, nn.Embedding)):
                mod.weight.normal_(0.0, std, generator=generator)
                if getattr(mod, "bias", None) is not None:
                    mod.bias.zero_()
            elif mod is not self and hasattr(mod, "init_weights"):  # stacked MoE experts
                mod.init_weights(std, generator)
            elif hasattr(mod, "reset_parameters") and not isinstance(mod, (nn.Linear, nn.Embedding)):
                mod.reset_parameters()

    def attention_layers(self) -> list[Block]:
        """Every block that keeps a KV cache, in cache-layer order."""
        return list(self.blocks)

    def new_cache(self, batch: int, max_len: int, dtype: torch.dtype | None = None,
                  device: torch.device | str | None = None, static: bool | None = None,
                  groups: Any = ()) -> KVCache:
        """A preallocated cache; `static` (default: what the backend prefers) keeps every decode
        step's shapes equal, for compilers; `groups` (first layer, n) are allocated contiguously."""
        p = self.embed.weight
        if static is None:
            static = bool(getattr(self.backend, "prefers_static_cache", False))
        layers = self.attention_layers()
        return KVCache(len(layers), batch, [b.attn.cfg.n_kv_heads for b in layers], max_len,
                       [b.attn.cfg.head_dim for b in layers], dtype or p.dtype, device or p.device, static, groups)

    # ------------------------------------------------------------------ forward
    def _layout(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None, positions: torch.Tensor | None,
                cache: KVCache | None, segment_ids: torch.Tensor | None) -> tuple[AttentionLayout, torch.Tensor]:
        b, t = tokens.shape
        dev = tokens.device
        if cache is None:
            mask = attention_mask.bool() if attention_mask is not None else None
            if positions is None:
                if segment_ids is not None:
                    positions = segment_positions(segment_ids)
                elif mask is not None:
                    positions = (mask.long().cumsum(-1) - 1).clamp_min(0)
                else:
                    positions = torch.arange(t, device=dev).expand(b, t)
            key_valid = mask if mask is not None and not bool(mask.all()) else None
            return AttentionLayout(0, t, t, key_valid, segment_ids), positions
        if segment_ids is not None:
            raise UsageError("packed sequences (segment_ids) are for cache-free forwards")
        if cache.static:
            return self._static_layout(tokens, attention_mask, positions, cache)
        start = cache.length
        end = start + t
        if attention_mask is not None:
            mask = attention_mask.to(device=cache.key_valid.device, dtype=torch.bool)
            cache.key_valid[:, start:end] = mask
            cache.has_padding = cache.has_padding or not bool(mask.all())
            steps = mask.long().cumsum(-1) - 1
        else:
            cache.key_valid[:, start:end] = True
            steps = torch.arange(t, device=dev).expand(b, t)
            mask = None
        if positions is None:
            positions = (cache.next_pos[:, None] + steps).clamp_min(0)
        cache.next_pos = cache.next_pos + (mask.long().sum(-1) if mask is not None else t)
        key_valid = cache.key_valid[:, :end] if cache.has_padding else None
        return AttentionLayout(start, t, end, key_valid), positions

    def _static_layout(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None,
                       positions: torch.Tensor | None, cache: KVCache) -> tuple[AttentionLayout, torch.Tensor]:
        """Every offset as a device tensor, every shape fixed: no host sync, no new graph per step."""
        b, t = tokens.shape
        dev = cache.pos.device
        slots = cache.pos + torch.arange(t, device=dev)
        if cache.length + t > cache.max_len:
            raise UsageError(f"KV cache overflow: {cache.length + t} positions needed, {cache.max_len} allocated")
        mask = (attention_mask.to(device=dev, dtype=torch.bool) if attention_mask is not None
                else torch.ones(b, t, dtype=torch.bool, device=dev))
        cache.key_valid.index_copy_(1, slots, mask)
        if positions is None:
            positions = (cache.next_pos[:, None] + mask.long().cumsum(-1) - 1).clamp_min(0)
        cache.next_pos = cache.next_pos + mask.long().sum(-1)
        cache.pos = cache.pos + t
        layout = AttentionLayout(cache.length, t, cache.max_len, cache.key_valid, None, slots)
        return layout, positions

    def run_blocks(self, blocks: Any, x: torch.Tensor, positions: torch.Tensor, layout: AttentionLayout,
                   cache: KVCache | None, tables: dict[Any, Any]) -> torch.Tensor:
        """Apply `blocks` in order; RoPE tables are built once per distinct (head_dim, rope) and shared.
        Decode steps go to the backend's step kernel when it takes them (all blocks in one call)."""
        if self._step is not None and cache is not None:
            ropes = [self.rope_for(blk, positions, torch.float32, tables) for blk in blocks]  # native: float32 tables
            y = self._step(blocks, x, ropes, layout, cache)
            if y is not None:
                return y
        for blk in blocks:
            x = blk(x, self.rope_for(blk, positions, x.dtype, tables), layout, cache)
        return x

    @staticmethod
    def rope_key(blk: Block) -> str:
        """The block's RoPE as a string ('' without RoPE), made once per block: hashing the config
        on every step costs more than the lookup."""
        key = blk.__dict__.get("_rope_key")
        if key is None:
            ac = blk.attn.cfg
            key = blk.__dict__["_rope_key"] = "" if ac.rope is None else f"{ac.head_dim}:{ac.rope!r}"
        return key

    @staticmethod
    def rope_for(blk: Block, positions: torch.Tensor, dtype: torch.dtype, tables: dict[Any, Any]) -> Any:
        """The block's RoPE (cos, sin), built once per distinct (head_dim, rope, dtype) per forward."""
        key = blk.__dict__.get("_rope_key")
        if key is None:
            key = CausalLM.rope_key(blk)
        if not key:
            return None
        if (key, dtype) not in tables:
            ac = blk.attn.cfg
            tables[key, dtype] = rope_tables(positions, ac.head_dim, ac.rope, dtype)
        return tables[key, dtype]

    def hidden_states(self, tokens: torch.Tensor, *, attention_mask: torch.Tensor | None = None,
                      positions: torch.Tensor | None = None, cache: KVCache | None = None,
                      segment_ids: torch.Tensor | None = None, embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Final-norm hidden states (B, T, dim); `embeds` replaces the token embedding lookup."""
        layout, positions = self._layout(tokens, attention_mask, positions, cache, segment_ids)
        x = self.embed_tokens(tokens) if embeds is None else embeds
        x = self.run_blocks(self.blocks, x, positions, layout, cache, {})
        if cache is not None:
            cache.length = layout.start + layout.q_len
        return self.norm(x)

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """The token embeddings the first block reads (scaled where the spec says)."""
        x = self.embed(tokens)
        if self.cfg.embed_scale is not None:
            x = x * torch.tensor(self.cfg.embed_scale, dtype=x.dtype, device=x.device)
        return x

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        w = self.embed.weight if self.output is None else self.output._parameters.get("weight")
        mesh = getattr(w, "device_mesh", None)  # tensor parallel: each rank its vocab rows, logits gathered
        if w is None:  # a quantized output projection (runtime/quant): its own kernels
            out = self.output(h).float()
        elif mesh is not None:
            from torch.distributed.tensor import Replicate

            out = F.linear(type(w).from_local(h, mesh, [Replicate()], run_check=False), w).full_tensor().float()
        else:
            y = self._linear(h, w, None) if self._linear is not None else None
            out = (F.linear(h, w) if y is None else y).float()
        cap = self.cfg.logit_softcap
        return out if cap is None else torch.tanh(out / cap) * cap

    def forward(self, tokens: torch.Tensor, *, attention_mask: torch.Tensor | None = None,
                positions: torch.Tensor | None = None, cache: KVCache | None = None,
                segment_ids: torch.Tensor | None = None, last_only: bool = False) -> torch.Tensor:
        """Logits (B, T, vocab) in float32; with `last_only`, the last position's (B, 1, vocab):
        a generation prefill needs no more, and skips the output head over the whole prompt."""
        h = self.hidden_states(tokens, attention_mask=attention_mask, positions=positions, cache=cache,
                               segment_ids=segment_ids)
        return self.logits(h[:, -1:] if last_only else h)

    def loss(self, tokens: torch.Tensor, targets: torch.Tensor | None = None, *,
             attention_mask: torch.Tensor | None = None, ignore_index: int = -100) -> torch.Tensor:
        """Mean next-token cross-entropy. Without `targets`, tokens shifted left are the targets;
        padding (attention_mask == 0) is ignored. With MoE layers, plus aux_loss_coef times the
        load-balancing loss (its raw value is left in `self.last_aux_loss`)."""
        if targets is None:
            targets = torch.full_like(tokens, ignore_index)
            targets[:, :-1] = tokens[:, 1:]
            if attention_mask is not None:
                targets[:, :-1] = targets[:, :-1].masked_fill(~attention_mask[:, 1:].bool(), ignore_index)
        with record_routing(self) as routing:
            logits = self(tokens, attention_mask=attention_mask)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=ignore_index)
        # MoE layers: + aux_loss_coef * Switch load-balancing loss; the raw one is kept for logs
        aux = routing.aux_loss(attention_mask)
        self.last_aux_loss = None if aux is None else aux[0].detach()
        return loss if aux is None else loss + aux[1]

    def generate(self, prompts: Any, max_new_tokens: int = 32, **kw: Any) -> Any:
        from ..generation import generate

        return generate(self, prompts, max_new_tokens=max_new_tokens, **kw)
