"""zoo.runtime.distributed: a model split across processes with torch.distributed (DeviceMesh,
DTensor), following the compiler's sharding plan."""

from .group import init_from_env, launched_ranks, local_device, world
from .tp import load_tp_slices, parallelize

__all__ = ["init_from_env", "launched_ranks", "load_tp_slices", "local_device", "parallelize", "world"]
