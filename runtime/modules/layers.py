"""nn.Linear / nn.Embedding that skip initialization on the meta device.

The compiler builds every model on meta; initializing a meta tensor does nothing useful, yet
`normal_` on meta goes through torch._refs and imports torch._dynamo (2-3 s on the first build
of a process). Weights come later from a checkpoint or `init_weights`.

`Linear.kernel` is what the bound backend offers in place of F.linear on its hot path (the
native small-GEMM of decode steps on CPU); it may decline a call by returning None."""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

LinearKernel = Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor]], Optional[torch.Tensor]]


class Linear(nn.Linear):
    kernel: LinearKernel | None = None

    def bind_kernels(self, backend: Any, kernels: Any) -> None:
        self.kernel = kernels.linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel is not None:
            y = self.kernel(x, self.weight, self.bias)
            if y is not None:
                return y
        return F.linear(x, self.weight, self.bias)

    def reset_parameters(self) -> None:
        if not self.weight.is_meta:
            super().reset_parameters()


class Embedding(nn.Embedding):
    def reset_parameters(self) -> None:
        if not self.weight.is_meta:
            super().reset_parameters()
