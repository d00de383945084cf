"""Tensor parallelism: the sharding plan (compiler/passes/sharding.py) applied to a runtime
model built on the meta device, with DTensor's `parallelize_module` (column-parallel q/k/v,
gate/up; row-parallel o and down; vocab-parallel embedding; the output's vocab rows sharded and
the logits gathered; stacked MoE experts each cut on the hidden dim, their routed outputs
all-reduced), then each rank's slices read straight from the checkpoint's files."""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import torch
import torch.distributed._functional_collectives as funcol
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    RowwiseParallel,
    parallelize_module,
)

from ..errors import UsageError
from ..modules.attention import AttentionConfig
from ..modules.layers import Linear


def _module_styles(net: nn.Module, plan: Any) -> tuple[dict[str, Any], list[str], dict[str, dict[str, int]]]:
    """DTensor styles by module path, the weights sharded without a style (the output's), and
    the modules that split their own parameters (`tensor_parallel`: stacked MoE experts) with
    the dim of each parameter."""
    styles: dict[str, Any] = {}
    bare: list[str] = []
    own: dict[str, dict[str, int]] = {}
    for name, pp in plan.params.items():
        path, attr = name.rpartition(".")[::2]
        mod = net.get_submodule(path)
        if pp.shard.dim is not None and hasattr(mod, "tensor_parallel"):
            own.setdefault(path, {})[attr] = pp.shard.dim
            continue
        if pp.shard.dim is None or attr != "weight":
            if pp.shard.dim is not None:
                styles.setdefault(path, None)
            continue
        style = pp.shard.style
        if isinstance(mod, nn.Embedding) and style == "vocab":
            styles[path] = RowwiseParallel(input_layouts=Replicate())  # rows of the vocab; partial sums reduced
        elif isinstance(mod, nn.Linear) and style == "vocab":
            bare.append(name)
        elif isinstance(mod, nn.Linear) and style == "colwise":
            styles[path] = ColwiseParallel()
        elif isinstance(mod, nn.Linear) and style == "rowwise":
            styles[path] = RowwiseParallel()
        else:
            raise UsageError(f"tensor parallelism does not split {name} ({style}) yet: run it with tp=1")
    for path, style in styles.items():
        if style is None:
            raise UsageError(f"tensor parallelism does not split the parameters of {path} yet: run it with tp=1")
    return styles, bare, own


def parallelize(net: nn.Module, plan: Any, mesh: DeviceMesh) -> nn.Module:
    """Apply `plan` (a ShardingPlan for mesh.size() ranks) to `net` in place: DTensor
    parameters, each attention seeing its local heads (n_heads/tp, n_kv_heads/tp: the KV cache
    it allocates is its share)."""
    tp = mesh.size()
    if plan.tp != tp:
        raise UsageError(f"the sharding plan is for tp={plan.tp}, the mesh has {tp} ranks")
    styles, bare, own = _module_styles(net, plan)
    parallelize_module(net, mesh, styles)
    for path, dims in own.items():
        def shard(attr: str, p: nn.Parameter, dims: dict[str, int] = dims) -> nn.Parameter:
            return nn.Parameter(distribute_tensor(p, mesh, [Shard(dims[attr])]), requires_grad=p.requires_grad)

        net.get_submodule(path).tensor_parallel(shard, partial(funcol.all_reduce, reduceOp="sum", group=mesh))
    for name in bare:
        path, attr = name.rpartition(".")[::2]
        mod = net.get_submodule(path)
        w = mod._parameters[attr]
        mod._parameters[attr] = nn.Parameter(distribute_tensor(w, mesh, [Shard(0)]), requires_grad=w.requires_grad)
    for path in styles:
        mod = net.get_submodule(path)
        if isinstance(mod, Linear):
            mod.kernel = None  # the backend's kernels take plain tensors; DTensor dispatches F.linear
    for mod in net.modules():
        cfg = getattr(mod, "cfg", None)
        if isinstance(cfg, AttentionConfig):
            mod.cfg = dataclasses.replace(cfg, n_heads=cfg.n_heads // tp, n_kv_heads=cfg.n_kv_heads // tp)
    for mod in net.modules():
        hook = getattr(mod, "on_tensor_parallel", None)  # fused kernels over plain weights step aside
        if hook is not None:
            hook()
    net.tp_mesh = mesh  # type: ignore[assignment]
    return net


def load_tp_slices(net: nn.Module, plan: Any, read: Any, device: torch.device | str = "cpu",
                   dtype: torch.dtype | None = None) -> None:
    """Fill a parallelized `net`'s parameters: `read(name, index)` returns the canonical tensor
    `name` (or its `index`, a tuple of slices, when not None) as a CPU tensor; each rank reads
    its own slice of every sharded parameter and whole copies of the replicated ones."""
    mesh: DeviceMesh = net.tp_mesh  # type: ignore[assignment]
    rank, tp = mesh.get_local_rank(), mesh.size()
    with torch.no_grad():
        for name, param in list(net.named_parameters()):
            pp = plan.params[name]
            index = None
            if pp.shard.dim is not None:
                n = pp.shape[pp.shard.dim] // tp
                index = tuple(slice(rank * n, (rank + 1) * n) if i == pp.shard.dim else slice(None)
                              for i in range(len(pp.shape)))
            t = read(name, index).to(device=device, dtype=dtype or param.dtype)
            if isinstance(param, DTensor):
                t = DTensor.from_local(t, mesh, param.placements, run_check=False)
            path, attr = name.rpartition(".")[::2]
            mod = net.get_submodule(path) if path else net
            mod._parameters[attr] = nn.Parameter(t, requires_grad=param.requires_grad)
