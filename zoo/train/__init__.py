"""Training: the Trainer (AdamW, schedule, gradient accumulation, checkpoints that resume
exactly), its config, the token data it reads, and its run folders; FSDP2 across processes with
DCP checkpoints (distributed.py) (docs/training.md)."""

from .config import TrainConfig, TrainError, lr_at
from .data import DataError, TokenStream
from .distributed import dcp_to_folder
from .state import TrainStateError, checkpoints, read_state, resolve_checkpoint
from .trainer import Trainer

__all__ = ["DataError", "TokenStream", "TrainConfig", "TrainError", "TrainStateError", "Trainer", "checkpoints",
           "dcp_to_folder", "lr_at", "read_state", "resolve_checkpoint"]
