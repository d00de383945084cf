"""zoo.runtime.distributed: a model split across processes with torch.distributed (DeviceMesh,
DTensor), following the compiler's sharding plan."""

from .tp import load_tp_slices, parallelize

__all__ = ["load_tp_slices", "parallelize"]
