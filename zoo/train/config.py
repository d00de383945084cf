"""What a training run is asked to do, and its learning-rate schedule.

The config is a flat dataclass of JSON scalars so a checkpoint can store it in `state.json` and a
resumed run continues with exactly the settings it started with (or explicitly overridden ones).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..compiler.errors import ZooError


class TrainError(ZooError, ValueError):
    """A training run was configured inconsistently or diverged."""


@dataclass
class TrainConfig:
    """Settings of a run. Defaults suit small models trained from scratch.

    bf16: None picks per device. On CUDA, bf16 autocast is the standard choice. On CPU it is
    off: measured on this project's CPUs (AMD EPYC without AVX512-BF16/AMX, 2 threads), a
    dim-256, 6-layer, vocab-4096 step on 4x128 tokens took 10.8 s with autocast against 0.96 s
    without (bf16 matmuls fall back to slow kernels). CPUs with AMX may gain, so `bf16=True`
    asks for it explicitly.
    """

    steps: int = 1000
    lr: float = 3e-4
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.1  # on matrices only: norms and biases are not decayed
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float | None = 1.0  # max global L2 norm; None disables clipping
    accum_steps: int = 1  # micro-batches per optimizer step
    bf16: bool | None = None
    memory_efficient: bool = False  # multi-token models: per-head forward/backward schedule
    checkpoint_every: int = 0  # 0: one checkpoint at the end of fit() (when there is an output folder)
    keep_last: int | None = None  # keep only the newest N step folders
    eval_every: int = 0
    eval_batches: int = 8
    log_every: int = 10
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes carried into checkpoints

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]  # JSON gives lists back
        problems = []
        if self.steps < 1:
            problems.append(f"steps must be >= 1, got {self.steps}")
        if self.lr <= 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            problems.append(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.warmup_steps < 0:
            problems.append(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.accum_steps < 1:
            problems.append(f"accum_steps must be >= 1, got {self.accum_steps}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            problems.append(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if problems:
            raise TrainError("bad training config: " + "; ".join(problems))

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], **overrides: Any) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known) + sorted(set(overrides) - known)
        if unknown:
            raise TrainError(f"unknown training setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**{**data, **overrides})


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warmup to `lr` over
    `warmup_steps` (step 0 already moves, at lr / warmup_steps), then a half cosine from `lr`
    down to `lr * min_lr_ratio` at the last step, and flat after it.

    Cosine after warmup (rather than linear or constant) is the schedule LLaMA and most
    from-scratch LM recipes use; being a pure function of the step, it needs no state to resume.
    """
    peak, floor = cfg.lr, cfg.lr * cfg.min_lr_ratio
    if step < cfg.warmup_steps:
        return peak * (step + 1) / cfg.warmup_steps
    decay_steps = cfg.steps - 1 - cfg.warmup_steps
    if decay_steps <= 0:
        return peak if step < cfg.steps else floor
    progress = min(1.0, (step - cfg.warmup_steps) / decay_steps)
    return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * progress))
