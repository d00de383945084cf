"""Training checkpoints without pickle: the model as a zoo checkpoint, everything else beside it.

    out/step-000200/            a zoo checkpoint: `zoo.load("out/step-000200")` gives the model
        zoo.yaml, model.safetensors, ...
        trainer/state.json      step, tokens seen, data positions, the TrainConfig (JSON scalars)
        trainer/optimizer.safetensors   AdamW moments and step counts, keyed "<param>/<slot>"
        trainer/optimizer.json  param groups (hyperparameters, parameter *names* not indices)
        trainer/rng.safetensors torch CPU (and CUDA) generator states

Optimizer tensors are keyed by parameter name rather than position so a checkpoint stays
readable by people and tools, and a reordered module tree fails loudly instead of silently
pairing moments with the wrong weights. The trainer files sit in a subfolder so the model folder
stays a plain zoo checkpoint (loaders glob only top-level `*.safetensors`). A step folder is
written under a hidden temporary name and renamed into place: a crash leaves no half checkpoint.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from ..checkpoint import atomic_folder
from ..checkpoint.tensors import write_safetensors
from ..compiler.errors import ZooError
from ..formats.export import save_into

TRAINER_DIR = "trainer"
STATE_FILE = "state.json"
FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step-(\d+)$")


class TrainStateError(ZooError, RuntimeError):
    """A training checkpoint is missing, incomplete, or does not match the model it resumes."""


def step_folder(out: str | Path, step: int) -> Path:
    return Path(out) / f"step-{step:06d}"


def checkpoints(out: str | Path) -> list[Path]:
    """Complete step folders under `out`, oldest first (temporary folders are hidden, so skipped)."""
    out = Path(out)
    found = [(int(m.group(1)), p) for p in out.glob("step-*") if (m := _STEP_DIR.match(p.name))
             and (p / TRAINER_DIR / STATE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def resolve_checkpoint(path: str | Path) -> Path:
    """A step folder itself, or the newest one in a run's output folder."""
    path = Path(path)
    if (path / TRAINER_DIR / STATE_FILE).is_file():
        return path
    found = checkpoints(path) if path.is_dir() else []
    if not found:
        raise TrainStateError(f"{path}: not a training checkpoint (no {TRAINER_DIR}/{STATE_FILE}) and no "
                              f"step-* checkpoints inside it")
    return found[-1]


# ------------------------------------------------------------------------------ optimizer
def optimizer_to_files(optimizer: torch.optim.Optimizer, names: dict[int, str]) -> tuple[dict[str, torch.Tensor],
                                                                                      list[dict[str, Any]]]:
    """(tensors keyed "<param>/<slot>", JSON param groups naming their parameters)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for idx, slots in sd["state"].items():
        for slot, value in slots.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"{names[idx]}/{slot}"] = t.detach().cpu().contiguous()
    groups = []
    for g in sd["param_groups"]:
        meta = {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items() if k != "params"}
        groups.append({**meta, "params": [names[i] for i in g["params"]]})
    return tensors, groups


def optimizer_from_files(optimizer: torch.optim.Optimizer, names: dict[int, str], tensors: dict[str, torch.Tensor],
                         groups: list[dict[str, Any]], source: str) -> None:
    """Load state written by `optimizer_to_files` into an optimizer built the same way."""
    index = {n: i for i, n in names.items()}
    current = optimizer.state_dict()["param_groups"]
    if [g["params"] for g in groups] != [[names[i] for i in g["params"]] for g in current]:
        raise TrainStateError(f"{source}: the optimizer's parameter groups differ from the model's "
                              f"(was the model or its weight-decay split changed?)")
    state: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        name, _, slot = key.rpartition("/")
        if name not in index:
            raise TrainStateError(f"{source}: optimizer state for {name!r}, which the model does not have")
        state.setdefault(index[name], {})[slot] = t
    param_groups = []
    for g in groups:
        meta = {k: (tuple(v) if k == "betas" else v) for k, v in g.items() if k != "params"}
        param_groups.append({**meta, "params": [index[n] for n in g["params"]]})
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})


# ------------------------------------------------------------------------------ RNG
def rng_tensors() -> dict[str, torch.Tensor]:
    """Global generator states (dropout and any user randomness); the data has its own seeds."""
    out = {"torch.cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out.update({f"torch.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return out


def restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["torch.cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch.cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# ------------------------------------------------------------------------------ folders
def write_checkpoint(folder: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                     names: dict[int, str], state: dict[str, Any]) -> Path:
    """A step folder: the model's zoo checkpoint with the trainer's files in `trainer/`, listed
    in its zoo.yaml like the rest; written atomically (a step saved again is swapped whole)."""
    folder = Path(folder).absolute()

    def trainer_files(staged: Path) -> None:
        tdir = staged / TRAINER_DIR
        tdir.mkdir()
        tensors, groups = optimizer_to_files(optimizer, names)
        write_safetensors(tensors, tdir / "optimizer.safetensors")
        (tdir / "optimizer.json").write_text(json.dumps({"param_groups": groups}, indent=1) + "\n")
        write_safetensors(rng_tensors(), tdir / "rng.safetensors")
        (tdir / STATE_FILE).write_text(json.dumps({"format": FORMAT_VERSION, **state}, indent=1) + "\n")

    with atomic_folder(folder) as tmp:
        save_into(model, tmp, progress=False, extra=trainer_files)
    return folder


def read_state(folder: Path) -> dict[str, Any]:
    path = folder / TRAINER_DIR / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise TrainStateError(f"{folder}: no {TRAINER_DIR}/{STATE_FILE}; not a training checkpoint") from None
    except json.JSONDecodeError as e:
        raise TrainStateError(f"{path}: not valid JSON ({e})") from None
    if state.get("format") != FORMAT_VERSION:
        raise TrainStateError(f"{path}: format {state.get('format')!r}; this zoo reads {FORMAT_VERSION}")
    return state


def read_optimizer(folder: Path) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    tdir = folder / TRAINER_DIR
    try:
        return load_file(tdir / "optimizer.safetensors"), json.loads((tdir / "optimizer.json").read_text())[
            "param_groups"]
    except (FileNotFoundError, KeyError, json.JSONDecodeError) as e:
        raise TrainStateError(f"{tdir}: optimizer state missing or unreadable ({e})") from None


def read_rng(folder: Path) -> dict[str, torch.Tensor]:
    path = folder / TRAINER_DIR / "rng.safetensors"
    if not path.is_file():
        raise TrainStateError(f"{path}: missing")
    return load_file(path)


def prune(out: str | Path, keep_last: int | None) -> None:
    """Delete all but the newest `keep_last` step folders (None or 0 keeps everything)."""
    if keep_last:
        for p in checkpoints(out)[:-keep_last]:
            shutil.rmtree(p, ignore_errors=True)
