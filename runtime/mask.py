"""Who may attend to whom, described rather than materialized.

Backends choose a kernel from the description (plain causal → a fused causal kernel; padding or
packed segments → an explicit mask or a block-diagonal bias), and the dense boolean mask is
built at most once per forward and window size, then shared by every layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class AttentionLayout:
    start: int  # cache slot of the first query
    q_len: int
    kv_len: int  # keys visible after this step's write: start + q_len
    key_valid: torch.Tensor | None = None  # (B, kv_len) bool; False marks padding slots
    segments: torch.Tensor | None = None  # (B, kv_len) int; packed sequences attend within their segment
    q_slots: torch.Tensor | None = None  # static-shape decoding: query slots as a device tensor
    _dense: dict = field(default_factory=dict, repr=False)

    @property
    def static(self) -> bool:
        """Shapes fixed by the cache size and step offsets held in tensors: one compiled graph
        serves every decode step (XLA, torch.compile)."""
        return self.q_slots is not None

    @property
    def plain_causal(self) -> bool:
        """True when a fused causal kernel gives the exact result (no padding, no packing)."""
        return self.key_valid is None and self.segments is None and self.start == 0 and self.q_slots is None

    @property
    def decode_unmasked(self) -> bool:
        """One new token per row that may see every cached key."""
        return self.q_len == 1 and self.key_valid is None and self.segments is None and self.q_slots is None

    def dense(self, window: int | None, device: torch.device) -> torch.Tensor:
        """Boolean mask (B|1, 1, q_len, kv_len): True where attention is allowed."""
        key = (window, device)
        if key not in self._dense:
            if self.q_slots is not None:
                q = self.q_slots.to(device)[:, None]
            else:
                q = torch.arange(self.start, self.start + self.q_len, device=device)[:, None]
            k = torch.arange(self.kv_len, device=device)[None, :]
            allowed = k <= q
            if window is not None:
                allowed = allowed & (q - k < window)
            allowed = allowed[None]
            if self.key_valid is not None:
                allowed = allowed & self.key_valid[:, None, :].to(device)
            if self.segments is not None:
                seg = self.segments.to(device)
                allowed = allowed & (seg[:, self.start:self.start + self.q_len, None] == seg[:, None, :])
            # a padding query sees at least itself, so no softmax row is empty (NaN would leak
            # through the zero weights into every row that reads its cached key/value)
            allowed = allowed | (k == q)[None]
            self._dense[key] = allowed[:, None]
        return self._dense[key]


def block_diagonal_mask(seqlens: list[int] | tuple[int, ...], device: torch.device | str | None = None) -> torch.Tensor:
    """(T, T) boolean mask, T = sum(seqlens): True where query and key lie in the same block
    (bidirectional within a block). For several images packed into one vision sequence."""
    ids = torch.repeat_interleave(torch.arange(len(seqlens), device=device),
                                  torch.as_tensor(list(seqlens), device=device))
    return ids[:, None] == ids[None, :]
