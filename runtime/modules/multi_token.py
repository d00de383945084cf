"""Multi-token prediction (Gloeckle et al. 2024): n transformer-block heads on a shared trunk.

Head i (one block) reads the trunk's output and, through the shared final norm and output
matrix, predicts token t+i+1. Head 0 is the ordinary next-token head, so the model decodes like
any LM; heads 1..n-1 draft for self-speculative decoding. The summed loss can run the paper's
memory-efficient schedule: each head's forward/backward in turn, gradients gathered at the
trunk output, then one trunk backward — peak memory holds one head's logits, not n.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..backends.base import Backend
from ..kv_cache import KVCache
from .decoder import Block, CausalLM, DecoderConfig
from .head_group import HeadGroup, groupable


class MultiTokenLM(CausalLM):
    def __init__(self, cfg: DecoderConfig, backend: Backend):
        super().__init__(cfg, backend)
        n_trunk = len(cfg.blocks)
        self.heads = nn.ModuleList(b.build(cfg.dim, backend, n_trunk + j) for j, b in enumerate(cfg.head_blocks))
        # inference runs the heads as one batched block when they share a shape (head_group.py)
        self._group = HeadGroup(list(self.heads)) if groupable(list(self.heads)) else None

    def on_tensor_parallel(self) -> None:
        """The stacked head weights are plain tensors: under tensor parallelism the heads run one by one."""
        super().on_tensor_parallel()
        self._group = None

    @property
    def n_future(self) -> int:
        return len(self.heads)

    def attention_layers(self) -> list[Block]:
        return list(self.blocks) + list(self.heads)

    def new_cache(self, batch: int, max_len: int, dtype: torch.dtype | None = None,
                  device: torch.device | str | None = None, static: bool | None = None) -> KVCache:
        """The heads' cache layers are one contiguous group, so the grouped heads write them at once."""
        groups = [(len(self.blocks), self.n_future)] if self._group is not None else []
        return super().new_cache(batch, max_len, dtype, device, static, groups=groups)

    def _grouped(self, heads: Sequence[int], cache: KVCache | None) -> bool:
        return (self._group is not None and list(heads) == list(range(self.n_future)) and not torch.is_grad_enabled()
                and (cache is None or cache.has_group(len(self.blocks), self.n_future)))

    def trunk(self, tokens: torch.Tensor, *, attention_mask: torch.Tensor | None = None,
              positions: torch.Tensor | None = None, cache: KVCache | None = None,
              segment_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple]:
        layout, positions = self._layout(tokens, attention_mask, positions, cache, segment_ids)
        tables: dict = {}
        h = self.run_blocks(self.blocks, self.embed_tokens(tokens), positions, layout, cache, tables)
        return h, (positions, layout, cache, tables)

    def head_states(self, h: torch.Tensor, ctx: tuple, heads: Sequence[int]) -> torch.Tensor:
        """(len(heads), B, T, dim): the chosen heads' final-norm hidden states over the trunk
        output, their KV caches written. At inference the heads run side by side: the backend's
        native step where it applies, else as one batched block (all heads, head_group.py)."""
        positions, layout, cache, tables = ctx
        blocks = [self.heads[i] for i in heads]
        hs = None
        if self._step is not None and cache is not None:
            rope = [self.rope_for(b, positions, torch.float32, tables) for b in blocks]
            hs = self._step(blocks, h, rope, layout, cache, parallel=len(blocks))
        if hs is None and self._grouped(heads, cache):
            hs = self._group.forward(h, self.rope_for(blocks[0], positions, h.dtype, tables), layout, cache)  # type: ignore[union-attr]
        if hs is None:
            hs = torch.stack([self.run_blocks([b], h, positions, layout, cache, tables) for b in blocks])
        if cache is not None:
            cache.length = layout.start + layout.q_len
        return self.norm(hs)

    def states(self, tokens: torch.Tensor, *, attention_mask: torch.Tensor | None = None,
               positions: torch.Tensor | None = None, cache: KVCache | None = None,
               segment_ids: torch.Tensor | None = None, heads: Sequence[int] | None = None) -> torch.Tensor:
        """(len(heads), B, T, dim): final-norm hidden states of the chosen heads (all by default),
        their caches written. A decode step the backend's native kernel takes runs trunk and heads
        in one call (the heads side by side); otherwise trunk, then `head_states`."""
        heads = list(range(self.n_future)) if heads is None else list(heads)
        if self._step is not None and cache is not None and segment_ids is None:
            layout, positions = self._layout(tokens, attention_mask, positions, cache, None)
            tables: dict = {}
            x = self.embed_tokens(tokens)
            blocks = list(self.blocks) + [self.heads[i] for i in heads]
            hs = self._step(blocks, x, [self.rope_for(b, positions, torch.float32, tables) for b in blocks], layout, cache,
                            parallel=len(heads))
            if hs is not None:
                cache.length = layout.start + layout.q_len
                return self.norm(hs)
            h = self.run_blocks(self.blocks, x, positions, layout, cache, tables)
            return self.head_states(h, (positions, layout, cache, tables), heads)
        h, ctx = self.trunk(tokens, attention_mask=attention_mask, positions=positions, cache=cache,
                            segment_ids=segment_ids)
        return self.head_states(h, ctx, heads)

    def head_logits(self, h: torch.Tensor, ctx: tuple, heads: Sequence[int], last_only: bool = False) -> torch.Tensor:
        """(B, T, len(heads), vocab) float32 logits of the chosen heads over the trunk output
        (T = 1, the last position, with `last_only`: the heads still fill their caches)."""
        hs = self.head_states(h, ctx, heads)
        return self.logits(hs[:, :, -1:] if last_only else hs).permute(1, 2, 0, 3)

    def forward(self, tokens: torch.Tensor, *, attention_mask: torch.Tensor | None = None,
                positions: torch.Tensor | None = None, cache: KVCache | None = None,
                segment_ids: torch.Tensor | None = None, all_heads: bool = False,
                last_only: bool = False) -> torch.Tensor:
        """Head 0's logits (B, T, vocab); with all_heads, every head's: (B, T, n, vocab), where
        [:, t, i] predicts token t+i+1; with last_only, T = 1 (the last position). A cache used
        for decoding should see the same choice of all_heads at every step (heads left out do
        not fill their cache)."""
        hs = self.states(tokens, attention_mask=attention_mask, positions=positions, cache=cache,
                         segment_ids=segment_ids, heads=range(self.n_future) if all_heads else [0])
        logits = self.logits(hs[:, :, -1:] if last_only else hs).permute(1, 2, 0, 3)
        return logits if all_heads else logits[:, :, 0]

    def hidden_states(self, tokens: torch.Tensor, **kw) -> torch.Tensor:  # type: ignore[override]
        """Head 0's final-norm hidden states."""
        return self.states(tokens, heads=[0], **kw)[0]

    def generate_speculative(self, prompts, max_new_tokens: int = 32, **kw):  # type: ignore[no-untyped-def]
        """Greedy self-speculative decoding: (new tokens per row, SpeculativeStats)."""
        from ..speculative import speculative_generate

        return speculative_generate(self, prompts, max_new_tokens, **kw)

    @staticmethod
    def _head_targets(tokens: torch.Tensor, i: int, attention_mask: torch.Tensor | None, ignore_index: int) -> torch.Tensor:
        """Token t+i+1 for every position t (ignore_index past the end or on padding)."""
        targets = torch.full_like(tokens, ignore_index)
        shift = i + 1
        if shift < tokens.shape[1]:
            targets[:, :-shift] = tokens[:, shift:]
            if attention_mask is not None:
                targets[:, :-shift] = targets[:, :-shift].masked_fill(~attention_mask[:, shift:].bool(), ignore_index)
        return targets

    def loss(self, tokens: torch.Tensor, targets: torch.Tensor | None = None, *,
             attention_mask: torch.Tensor | None = None, ignore_index: int = -100,
             memory_efficient: bool = False) -> torch.Tensor:
        """Sum over heads of each head's mean cross-entropy (unweighted, as in the paper).

        memory_efficient=True runs the backward pass itself (so call it instead of
        loss().backward()) and returns the detached loss; gradients equal the plain schedule's."""
        if targets is not None:
            raise ValueError("multi-token loss derives each head's targets from `tokens`")
        h, ctx = self.trunk(tokens, attention_mask=attention_mask)
        positions, layout, _, tables = ctx

        def head_loss(i: int, trunk_out: torch.Tensor) -> torch.Tensor:
            logits = self.logits(self.norm(self.run_blocks([self.heads[i]], trunk_out, positions, layout, None, tables)))
            tgt = self._head_targets(tokens, i, attention_mask, ignore_index)
            return F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=ignore_index)

        if not memory_efficient:
            return sum(head_loss(i, h) for i in range(self.n_future))  # type: ignore[return-value]
        detached = h.detach().requires_grad_(True)
        total = torch.zeros((), device=h.device)
        for i in range(self.n_future):
            part = head_loss(i, detached)
            part.backward()  # frees this head's activations before the next head runs
            total += part.detach()
        h.backward(detached.grad)
        return total

