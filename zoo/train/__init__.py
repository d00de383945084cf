"""Training: the Trainer (AdamW, schedule, gradient accumulation, checkpoints that resume
exactly), its config, the token data it reads, and its run folders (docs/training.md)."""

from .config import TrainConfig, TrainError, lr_at
from .data import DataError, TokenStream
from .state import TrainStateError, checkpoints, read_state, resolve_checkpoint
from .trainer import Trainer

__all__ = ["DataError", "TokenStream", "TrainConfig", "TrainError", "TrainStateError", "Trainer", "checkpoints",
           "lr_at", "read_state", "resolve_checkpoint"]
