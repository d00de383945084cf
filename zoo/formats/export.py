"""Writing a model in a format: the zoo's own folder, a transformers folder, Meta's .pth shards,
Mistral's consolidated.safetensors.

Every writer goes through the same key map the importer binds (keymap.Plan.to_external), so
what is exported is exactly what imports back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..checkpoint import (
    CANONICAL,
    atomic_folder,
    manifest,
    parse_size,
    save_sharded,
    write_spec,
)
from ..checkpoint.card import model_card
from ..compiler.schema import ModelSpec
from . import format_for
from .gguf_write import write_gguf
from .hf import (
    architectures,
    generation_config,
    hf_format,
    hf_unsupported,
    to_hf_config,
)
from .keymap import Plan, bind
from .meta import params_from_spec, write_meta
from .mistral import mistral_params, write_mistral
from .tokenizer_config import write_tokenizer_config
from .transforms import FormatError


def default_layout(spec: ModelSpec) -> str:
    """transformers' layout when transformers can run the spec (the spec's own hf-* format if
    it names one), else the canonical names."""
    if hf_unsupported(spec) is not None or spec.quantization is not None:  # integers + scales: zoo's own names
        return CANONICAL
    fmt = spec.weights.format if spec.weights else None
    own = hf_format(spec)  # its transformers family's key map (hf-llama, hf-mixtral ...)
    classes = architectures()
    return fmt if fmt in classes and classes[fmt] == classes[own] else own


def _plan(model: nn.Module, layout: str) -> tuple[Plan, dict[str, torch.Tensor]]:
    spec = model.spec  # type: ignore[attr-defined]
    state = model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    return bind(format_for(layout, shapes), spec, shapes), state


def external_state(model: nn.Module, layout: str) -> dict[str, torch.Tensor]:
    """The model's tensors under the names (and in the layout) of `layout`."""
    plan, state = _plan(model, layout)
    return dict(plan.to_external(state))


def _dtype(model: nn.Module) -> torch.dtype | None:
    return next((p.dtype for p in model.parameters()), None)


def _save_tokenizer(model: nn.Module, folder: Path, hf_files: bool = False) -> None:
    """The tokenizer's own file; with `hf_files`, transformers' tokenizer files beside it."""
    tok = getattr(model, "tokenizer", None)
    if tok is not None and hasattr(tok, "save"):
        tok.save(folder)
        if hf_files:
            write_tokenizer_config(tok, model.spec, folder)  # type: ignore[attr-defined]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def write_checkpoint_files(model: nn.Module, folder: Path, *, layout: str | None = None,
                           max_shard_size: int = 5 * 2**30, repo_id: str | None = None,
                           progress: bool | None = None, card: bool = True, name: str | None = None) -> str:
    """Tensors (+ index), config.json where transformers runs the spec, tokenizer, card, into
    `folder` (zoo.yaml is the caller's: it lists these files). Returns the layout written."""
    spec: ModelSpec = model.spec  # type: ignore[attr-defined]
    layout = layout or default_layout(spec)
    fmt = format_for(layout, model.state_dict())
    if fmt.storage != "safetensors":
        raise FormatError(f"layout {layout!r} is stored as {fmt.storage}; zoo checkpoints hold safetensors "
                          f"(export to it with `zoo convert --to meta`)")
    state = external_state(model, layout)
    save_sharded(state, folder, max_shard_size, metadata={"zoo_fingerprint": spec.fingerprint(), "zoo_layout": layout},
                 progress=progress)
    reason = hf_unsupported(spec) or (None if layout in architectures() else f"its tensors use zoo's {layout} names")
    if reason is None:
        _write_json(folder / "config.json", to_hf_config(spec, _dtype(model)))
        _write_json(folder / "generation_config.json", generation_config(spec))
    _save_tokenizer(model, folder, hf_files=True)
    if card:
        files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}
        files["zoo.yaml"] = 0
        text = model_card(spec, params=sum(t.numel() for t in state.values()), layout=layout,
                          hf_loadable=reason is None, hf_reason=reason, repo_id=repo_id,
                          files={k: v for k, v in files.items() if k != "zoo.yaml"},
                          dtype=str(_dtype(model)).removeprefix("torch."),
                          base_model=getattr(model, "weights_from", None), name=name)
        (folder / "README.md").write_text(text, encoding="utf-8")
    return layout


def export_hf(model: nn.Module, path: str | Path, *, max_shard_size: int | str = 5 * 2**30, overwrite: bool = True,
              progress: bool | None = None) -> Path:
    """A plain transformers folder (no zoo.yaml): safetensors under transformers' names,
    config.json, generation_config.json, tokenizer."""
    spec: ModelSpec = model.spec  # type: ignore[attr-defined]
    why = hf_unsupported(spec) or (f"weights stored as {spec.quantization.describe()}" if spec.quantization else None)
    if why:
        raise FormatError(f"{spec.name}: transformers cannot run it ({why})")
    layout = default_layout(spec)
    with atomic_folder(Path(path), overwrite) as tmp:
        write_checkpoint_files(model, tmp, layout=layout, max_shard_size=parse_size(max_shard_size), progress=progress,
                               card=False)
    return Path(path).absolute()


def meta_layout(spec: ModelSpec) -> str:
    """meta-mtp for multi-token models (extra_heads), else meta."""
    return "meta-mtp" if spec.arch.heads.head_blocks else "meta"


def export_meta(model: nn.Module, path: str | Path, *, shards: int = 1, overwrite: bool = True) -> Path:
    """Meta's layout: consolidated.NN.pth (`shards` model-parallel pieces) + params.json + tokenizer."""
    spec: ModelSpec = model.spec  # type: ignore[attr-defined]
    params = params_from_spec(spec)
    plan, state = _plan(model, meta_layout(model.spec))
    with atomic_folder(Path(path), overwrite) as tmp:
        write_meta(dict(plan.to_external(state)), plan.shard_dims(), params, tmp, shards)
        _save_tokenizer(model, tmp)
    return Path(path).absolute()


def export_mistral(model: nn.Module, path: str | Path, *, overwrite: bool = True) -> Path:
    """Mistral's layout: consolidated.safetensors + params.json (+ tekken.json), what
    mistral-inference's `Transformer.from_folder` reads (Mistral NeMo, Pixtral)."""
    params = mistral_params(model.spec)  # type: ignore[attr-defined]
    plan, state = _plan(model, "mistral")
    with atomic_folder(Path(path), overwrite) as tmp:
        write_mistral(dict(plan.to_external(state)), params, tmp)
        _save_tokenizer(model, tmp)
    return Path(path).absolute()


def save(model: Any, path: str | Path, *, max_shard_size: int | str = 5 * 2**30, overwrite: bool = True,
         layout: str | None = None, repo_id: str | None = None, progress: bool | None = None) -> Path:
    """Write `model` as a checkpoint folder that both zoo and transformers load.

    Design: when transformers has the family (`formats.hf.hf_unsupported(spec)` is None), the
    tensors are written under *transformers' names* through the very key map zoo imports with
    (`specs/formats/hf-llama.yaml`), beside a `config.json`; `zoo.yaml` records `layout:
    hf-llama`. One set of tensors then serves both libraries: no duplicate weights, no second
    export step, and the same code path is exercised by every HF import. Canonical names would
    need transformers to learn the zoo's names (it cannot) or a second copy of the weights.
    Specs transformers cannot run are saved under canonical names (`layout: canonical`).

    Files: zoo.yaml (written last, listing every other file's size and sha256), model*.safetensors
    (+ index when sharded, shards of at most `max_shard_size` bytes or "500MB"), config.json and
    generation_config.json, the tokenizer, README.md (model card). All written atomically.
    """
    target = Path(path)
    with atomic_folder(target, overwrite) as tmp:
        save_into(model, tmp, layout=layout, max_shard_size=max_shard_size, repo_id=repo_id, progress=progress,
                  name=target.name)
    return target.absolute()


def save_into(model: Any, folder: Path, *, layout: str | None = None, max_shard_size: int | str = 5 * 2**30,
              repo_id: str | None = None, progress: bool | None = None,
              extra: Callable[[Path], None] | None = None, name: str | None = None) -> None:
    """A zoo checkpoint's files written into the (new, empty) `folder`: `save` without the
    atomic swap, for callers that hold their own temporary folder. `extra(folder)` adds files
    (a trainer's state) before zoo.yaml lists every file."""
    layout = write_checkpoint_files(model, folder, layout=layout, max_shard_size=parse_size(max_shard_size),
                                    repo_id=repo_id, progress=progress, name=name)
    if extra is not None:
        extra(folder)
    write_spec(folder, model.spec, layout, manifest(folder), base_model=getattr(model, "weights_from", None))


EXPORTERS = {"hf": export_hf, "meta": export_meta, "mistral": export_mistral, "zoo": save, "gguf": write_gguf}


def export(model: nn.Module, dst: str | Path, to: str, *, shards: int = 1, max_shard_size: int | str = 5 * 2**30,
           overwrite: bool = False, gguf_type: str | None = None) -> Path:
    """Write `model` to `dst` as `to`: 'hf' (transformers folder), 'meta' (consolidated.*.pth),
    'mistral' (consolidated.safetensors), 'zoo' (zoo's own folder) or 'gguf' (one llama.cpp file
    whose 2-D weights are `gguf_type`: f32, f16, bf16, q8_0, q4_0; default the model's float type)."""
    if to == "gguf":
        return write_gguf(model, dst, dtype=gguf_type, overwrite=overwrite)
    q = getattr(getattr(model, "spec", None), "quantization", None)
    if q is not None and to != "zoo":
        raise FormatError(f"convert: the model is stored as {q.describe()}, which only zoo's own folders hold "
                          f"(--to zoo); convert its float checkpoint to {to}")
    if to == "meta":
        return export_meta(model, dst, shards=shards, overwrite=overwrite)
    if to == "mistral":
        return export_mistral(model, dst, overwrite=overwrite)
    if to in ("hf", "zoo"):
        return EXPORTERS[to](model, dst, max_shard_size=max_shard_size, overwrite=overwrite)
    raise FormatError(f"convert: --to {to!r}; expected one of {', '.join(EXPORTERS)}")
