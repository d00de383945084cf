"""A preallocated KV cache: decoding writes into fixed buffers, never reallocates."""

from __future__ import annotations

from typing import Sequence

import torch

from .errors import UsageError


class KVCache:
    """Keys and values for every layer, (B, n_kv_heads, max_len, head_dim) each.

    `length` is the number of filled slots, shared by all rows (prompts are left-padded);
    `key_valid` marks padding slots; `next_pos` is each row's next RoPE position. Rolling back
    (speculative decoding) is setting `length` lower: stale slots are overwritten later.
    """

    def __init__(self, n_layers: int, batch: int, n_kv_heads: int | list[int], max_len: int,
                 head_dim: int | list[int], dtype: torch.dtype, device: torch.device | str, static: bool = False,
                 groups: Sequence[tuple[int, int]] = ()):
        heads = n_kv_heads if isinstance(n_kv_heads, list) else [n_kv_heads] * n_layers
        dims = head_dim if isinstance(head_dim, list) else [head_dim] * n_layers
        self.k = [torch.zeros(batch, h, max_len, d, dtype=dtype, device=device) for h, d in zip(heads, dims)]
        self.v = [torch.zeros(batch, h, max_len, d, dtype=dtype, device=device) for h, d in zip(heads, dims)]
        # groups (first layer, n): layers that run as one batched block (multi-token heads) share
        # one buffer (n * B, h, max_len, d) whose row blocks are those layers' caches
        self._groups: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        for first, n in groups:
            h, d = heads[first], dims[first]
            if any(heads[i] != h or dims[i] != d for i in range(first, first + n)):
                raise UsageError(f"cache group {first}..{first + n - 1}: layers differ in kv heads or head_dim")
            kb = torch.zeros(n * batch, h, max_len, d, dtype=dtype, device=device)
            vb = torch.zeros(n * batch, h, max_len, d, dtype=dtype, device=device)
            for j in range(n):
                self.k[first + j], self.v[first + j] = kb[j * batch:(j + 1) * batch], vb[j * batch:(j + 1) * batch]
            self._groups[(first, n)] = (kb, vb)
        self.key_valid = torch.ones(batch, max_len, dtype=torch.bool, device=device)
        self.next_pos = torch.zeros(batch, dtype=torch.long, device=device)
        self.has_padding = False
        self.length = 0
        self.max_len = max_len
        self.batch = batch
        # static mode: the fill level also lives on the device, and attention always reads the
        # whole buffer under a mask, so every decode step has the same shapes
        self.static = static
        self.pos = torch.zeros((), dtype=torch.long, device=device)

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor, start: int,
              slots: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self._put(self.k[layer], self.v[layer], k, v, start, slots)

    def has_group(self, first: int, n: int) -> bool:
        return (first, n) in self._groups

    def write_group(self, first: int, n: int, k: torch.Tensor, v: torch.Tensor, start: int,
                    slots: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`write` for a group of layers at once: k, v are (n * B, h, T, d), layer-major."""
        kb, vb = self._groups[(first, n)]
        return self._put(kb, vb, k, v, start, slots)

    def _put(self, kb: torch.Tensor, vb: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int,
             slots: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if slots is not None:  # static: scatter into the full buffer, return all of it
            kb.index_copy_(2, slots, k)
            vb.index_copy_(2, slots, v)
            return kb, vb
        end = start + k.shape[2]
        if end > self.max_len:
            raise UsageError(f"KV cache overflow: {end} positions needed, {self.max_len} allocated")
        kb[:, :, start:end] = k
        vb[:, :, start:end] = v
        return kb[:, :, :end], vb[:, :, :end]

    def rollback(self, length: int) -> None:
        """Forget every slot from `length` on (rejected speculative tokens)."""
        if length > self.length:
            raise UsageError(f"cannot roll forward: length {self.length}, asked {length}")
        # rolled-back slots hold real (decoded) tokens, so each row's next position moves back too
        self.next_pos = self.next_pos - (self.length - length)
        self.length = length
        self.pos.fill_(length)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)
