"""nn.Linear / nn.Embedding that skip initialization on the meta device.

The compiler builds every model on meta; initializing a meta tensor does nothing useful, yet
`normal_` on meta goes through torch._refs and imports torch._dynamo (2-3 s on the first build
of a process). Weights come later from a checkpoint or `init_weights`."""

from __future__ import annotations

from torch import nn


class Linear(nn.Linear):
    def reset_parameters(self) -> None:
        if not self.weight.is_meta:
            super().reset_parameters()


class Embedding(nn.Embedding):
    def reset_parameters(self) -> None:
        if not self.weight.is_meta:
            super().reset_parameters()
