"""The process group a run joins: torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR ...),
nccl on CUDA and gloo on CPU. Shared by tensor-parallel inference and FSDP training."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def launched_ranks() -> int:
    """How many processes torchrun started for this run (1 outside torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def init_from_env(device: str = "cpu") -> tuple[int, int]:
    """Join the process group torchrun describes: nccl on CUDA (each rank on cuda:LOCAL_RANK),
    gloo on CPU. (0, 1) without torchrun."""
    if not (dist.is_available() and dist.is_initialized()) and launched_ranks() > 1:
        cuda = str(device).startswith("cuda")
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    return world()


def local_device(device: str) -> str:
    """`cuda` under torchrun means this rank's GPU (cuda:LOCAL_RANK); anything else as given."""
    if device == "cuda" and launched_ranks() > 1:
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return device
