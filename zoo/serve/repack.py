"""Re-packing KV caches when the running batch changes.

The runtime's KVCache shares one fill level across rows and marks padding per slot
(`key_valid`), with each row's next RoPE position in `next_pos`. A batch whose membership
changes is therefore rebuilt as a new cache: every live row's valid slots are copied, compacted
and right-aligned (left padding), from whichever cache the row lives in (the running batch, or
the cache its prompt was just prefilled into). Positions travel with the row, so a row's keys,
values and next position are exactly what they were; only padding (masked out) differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..runtime.kv_cache import KVCache


@dataclass(frozen=True)
class RowSource:
    cache: KVCache
    row: int


def valid_slots(cache: KVCache, row: int) -> torch.Tensor:
    """The indices of `row`'s real (non-padding) slots in `cache`, in order."""
    return cache.key_valid[row, :cache.length].nonzero().flatten()


def repack(model: Any, rows: Sequence[RowSource], capacity_after: int) -> KVCache:
    """A new cache holding `rows` (in order), each compacted and left-padded to the longest,
    with room for `capacity_after` more slots. Never static: its width changes between steps."""
    slots = [valid_slots(s.cache, s.row) for s in rows]
    width = max(int(s.numel()) for s in slots)
    new = model.new_cache(len(rows), width + capacity_after, static=False)
    new.key_valid[:, :width] = False
    by_cache: dict[int, tuple[KVCache, list[int], list[torch.Tensor], list[torch.Tensor]]] = {}
    for i, (src, idx) in enumerate(zip(rows, slots)):
        n = int(idx.numel())
        dst_slots = torch.arange(width - n, width, device=idx.device)
        new.key_valid[i, width - n:width] = True
        new.next_pos[i] = src.cache.next_pos[src.row]
        entry = by_cache.setdefault(id(src.cache), (src.cache, [], [], []))
        entry[1].append(i)
        entry[2].append(torch.stack([torch.full_like(idx, src.row), idx]))
        entry[3].append(torch.stack([torch.full_like(dst_slots, i), dst_slots]))
    for cache, _, src_idx, dst_idx in by_cache.values():
        s = torch.cat(src_idx, dim=1)
        d = torch.cat(dst_idx, dim=1)
        for layer in range(len(new.k)):
            new.k[layer][d[0], :, d[1]] = cache.k[layer][s[0], :, s[1]]
            new.v[layer][d[0], :, d[1]] = cache.v[layer][s[0], :, s[1]]
    new.length = width
    new.pos.fill_(width)
    new.has_padding = any(int(s.numel()) < width for s in slots)
    return new
