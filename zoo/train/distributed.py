"""FSDP2 training and DCP checkpoints: the Trainer across processes (docs/training.md).

    torchrun --nproc-per-node 2 -m zoo train SPEC --data tokens.bin --fsdp 2 --steps 100 --out run/

Under an initialized process group (gloo on CPU, nccl on CUDA) `shard_model` applies PyTorch's
FSDP2 (`fully_shard`) to each block and then to the root, so every rank holds 1/world of each
parameter and of its AdamW moments. Checkpoints go through `torch.distributed.checkpoint`: each
rank writes its own shards (no rank gathers the model) and the step folder can be resumed at any
world size, including one plain process; `dcp_to_folder` turns one into a normal zoo folder.

A DCP step folder:

    step-000004/
        .metadata, __0_0.distcp, ...  the model and optimizer state (DCP, keyed by parameter name)
        trainer/state.json            step, tokens seen, data position, TrainConfig, "dcp": true
        trainer/spec.json             the resolved spec, to rebuild the model anywhere
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..runtime.distributed.group import (
    init_from_env as init_from_env,  # `zoo train` joins the group through here
)
from ..runtime.distributed.group import world
from .config import TrainError
from .state import FORMAT_VERSION, STATE_FILE, TRAINER_DIR, TrainStateError

SPEC_JSON = "spec.json"


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def fsdp_units(model: nn.Module) -> list[nn.Module]:
    """The modules sharded (and gathered) one at a time: every transformer block, trunk and heads."""
    units: list[nn.Module] = []
    for name in ("blocks", "head_blocks", "heads"):
        seq = getattr(model, name, None)
        if isinstance(seq, nn.ModuleList):
            units.extend(m for m in seq if m not in units and any(True for _ in m.parameters()))
    return units


def shard_model(model: nn.Module, *, mixed_precision: bool = False, mesh: Any = None, tp: int = 1) -> nn.Module:
    """FSDP2 in place: `fully_shard` each block, then the root (embedding, final norm, output).
    `mixed_precision`: parameters gathered in bf16 for compute, gradients reduced in float32
    (the master weights and AdamW state stay float32).

    `tp` > 1: a 2-D mesh (world/tp data-parallel x tp tensor-parallel, torchtitan's order: TP
    first, then FSDP): the compiler's sharding plan applied with DTensor on the "tp" dim
    (runtime/distributed/tp.py, as for inference), then FSDP over the "dp" dim; the ranks of a
    tensor-parallel group read the same rows of the batch. The model keeps the data-parallel
    mesh as `dp_mesh` (`data_rank`)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import (
        MixedPrecisionPolicy,
        fully_shard,
        register_fsdp_forward_method,
    )

    if mesh is None and not (dist.is_available() and dist.is_initialized()):
        raise TrainError("FSDP needs an initialized process group: launch with torchrun "
                         "(e.g. torchrun --nproc-per-node 2 -m zoo train ... --fsdp 2)")
    if tp > 1:
        from ..compiler.passes.sharding import plan_sharding
        from ..runtime.distributed import parallelize

        size = world()[1]
        if size % tp:
            raise TrainError(f"--tp {tp} does not divide the {size} ranks of this run")
        device = next(model.parameters()).device
        mesh2 = init_device_mesh(device.type if device.type != "meta" else "cpu", (size // tp, tp),
                                 mesh_dim_names=("dp", "tp"))
        mesh2[("dp", "tp")]._flatten("dp_tp")  # norms over both dims reduce in one collective, not two
        parallelize(model, plan_sharding(model.compiled.ir, tp), mesh2["tp"])
        mesh = mesh2["dp"]
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if mixed_precision \
        else MixedPrecisionPolicy()
    for unit in fsdp_units(model):
        fully_shard(unit, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    model.dp_mesh = mesh  # type: ignore[assignment]
    if hasattr(model, "loss"):
        # multi-token losses reach the root's parameters without calling forward()
        register_fsdp_forward_method(model, "loss")
    return model


def data_rank(model: nn.Module) -> tuple[int, int]:
    """(this rank's place, the number of places) along the data-parallel dim: the whole world
    under plain FSDP, the "dp" dim of a tp x fsdp mesh."""
    mesh = getattr(model, "dp_mesh", None)
    if mesh is not None:
        return mesh.get_local_rank(), mesh.size()
    return world()


def grad_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The global L2 norm of gradients that may be DTensors on different meshes (a 2-D
    tp x fsdp mesh's split weights, the data-parallel mesh's replicated norms): one norm per
    mesh, reduced over its shards, then combined."""
    groups: dict[Any, list[torch.Tensor]] = {}
    for g in grads:
        groups.setdefault(getattr(g, "device_mesh", None), []).append(g)
    norms = []
    for gs in groups.values():
        n = torch.nn.utils.get_total_norm(gs)
        norms.append(n.full_tensor() if hasattr(n, "full_tensor") else n)
    return torch.linalg.vector_norm(torch.stack([n.float() for n in norms])) if norms else torch.zeros(())


def local_rows(batch: torch.Tensor, model: nn.Module | None = None) -> torch.Tensor:
    """This rank's contiguous slice of a global batch (its data-parallel place's, see `data_rank`)."""
    rank, size = world() if model is None else data_rank(model)
    if size == 1:
        return batch
    if batch.shape[0] % size:
        raise TrainError(f"the global batch of {batch.shape[0]} sequences does not divide among {size} data-parallel "
                         f"ranks; choose a batch size that is a multiple of {size}")
    n = batch.shape[0] // size
    return batch[rank * n:(rank + 1) * n]


def mean_over_ranks(value: float, device: torch.device) -> float:
    size = world()[1]
    if size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t) / size


# ------------------------------------------------------------------------------ checkpoints
def _state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    msd, osd = get_state_dict(model, optimizer)
    return {"model": msd, "optim": osd}


def save_dcp(folder: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> Path:
    """Every rank writes its shards into a hidden temporary folder; rank 0 adds the trainer's
    JSON and renames it into place once all ranks are done (a crash leaves no half checkpoint)."""
    import torch.distributed.checkpoint as dcp

    folder = Path(folder).absolute()
    tmp = folder.parent / f".{folder.name}.tmp"
    rank, size = world()
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / TRAINER_DIR).mkdir(parents=True)
    if size > 1:
        dist.barrier()
    dcp.save(_state_dicts(model, optimizer), checkpoint_id=str(tmp))
    if rank == 0:
        spec = model.spec.model_dump(mode="json")  # type: ignore[attr-defined,operator]
        (tmp / TRAINER_DIR / SPEC_JSON).write_text(json.dumps(spec, indent=1) + "\n")
        doc = {"format": FORMAT_VERSION, "dcp": True, "world_size": size, **state}
        (tmp / TRAINER_DIR / STATE_FILE).write_text(json.dumps(doc, indent=1) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    if size > 1:
        dist.barrier()
    return folder


def is_dcp(folder: str | Path) -> bool:
    return (Path(folder) / ".metadata").is_file() and (Path(folder) / TRAINER_DIR / SPEC_JSON).is_file()


def load_dcp(folder: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Read a DCP checkpoint into `model` (and `optimizer`), sharded or not, at any world size."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_state_dict,
        set_model_state_dict,
        set_state_dict,
    )

    folder = Path(folder)
    if not (folder / ".metadata").is_file():
        raise TrainStateError(f"{folder}: not a distributed (DCP) checkpoint: no .metadata")
    if optimizer is None:
        sd = {"model": get_model_state_dict(model)}
    else:
        msd, osd = get_state_dict(model, optimizer)
        sd = {"model": msd, "optim": osd}
    with warnings.catch_warnings():  # without a process group: "assuming ... a single process", as meant
        warnings.filterwarnings("ignore", message=".*single process", category=UserWarning)
        dcp.load(sd, checkpoint_id=str(folder))
    if optimizer is None:
        set_model_state_dict(model, sd["model"])
    else:
        set_state_dict(model, optimizer, model_state_dict=sd["model"], optim_state_dict=sd["optim"])


def model_from_dcp(folder: str | Path, *, device: str | torch.device = "cpu", backend: str | None = None,
                   meta: bool = False) -> nn.Module:
    """The model a DCP step folder holds, built from its spec and filled from its shards (call it
    on every rank under a process group, then `shard_model` it, or in one plain process).
    `meta`: left on the meta device (nothing allocated) for `shard_model` and `allocate_shards`:
    no rank ever holds the whole model."""
    from ..compiler.schema import ModelSpec
    from ..model import as_zoo_model, lower_spec, materialize, parse_device

    folder = Path(folder)
    path = folder / TRAINER_DIR / SPEC_JSON
    if not path.is_file():
        raise TrainStateError(f"{folder}: no {TRAINER_DIR}/{SPEC_JSON}; not a distributed training checkpoint")
    spec = ModelSpec.model_validate(json.loads(path.read_text()))
    dev = parse_device(device)
    compiled, net = lower_spec(spec, backend, dev)
    if not meta or any(True for _ in net.buffers()):  # buffers would need their own init: materialize whole
        materialize(net, dev, None, 0)  # every value is overwritten from the shards
    return as_zoo_model(net, compiled)


def allocate_shards(model: nn.Module, device: str | torch.device) -> None:
    """Give a sharded model still on the meta device real (uninitialized) storage for its own
    shards only; `load_dcp` then fills them."""
    if any(p.is_meta for p in model.parameters()):
        model.to_empty(device=device)


def load_dcp_model(folder: str | Path, *, device: str | torch.device = "cpu", backend: str | None = None) -> nn.Module:
    """The trained model of a DCP step folder, whole, in this process (every shard read into full
    tensors; any world size wrote it)."""
    model = model_from_dcp(folder, device=device, backend=backend)
    load_dcp(folder, model)
    return model


def dcp_to_folder(folder: str | Path, out: str | Path, **save_kw: Any) -> Path:
    """A DCP training checkpoint as a normal zoo folder (zoo.yaml + safetensors) that `zoo.load`
    reads (`zoo convert RUN/step-N --to zoo OUT` does the same)."""
    return Path(load_dcp_model(folder).save(out, **save_kw))  # type: ignore[operator]
