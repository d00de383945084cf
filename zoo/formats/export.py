"""Writing a model in a format: the zoo's own folder, a transformers folder, Meta's .pth shards.

Every writer goes through the same key map the importer binds (keymap.Plan.to_external), so
what is exported is exactly what imports back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import CANONICAL, atomic_folder, parse_size
from ..compiler.schema import ModelSpec
from ..hf_config import ARCHITECTURES, generation_config, hf_format, hf_unsupported, to_hf_config
from . import format_for
from .keymap import Plan, bind


def default_layout(spec: ModelSpec) -> str:
    """transformers' layout when transformers can run the spec (the spec's own hf-* format if
    it names one), else the canonical names."""
    if hf_unsupported(spec) is not None:
        return CANONICAL
    fmt = spec.weights.format if spec.weights else None
    own = hf_format(spec)  # hf-llama, or hf-mixtral for MoE specs
    return fmt if fmt in ARCHITECTURES and ARCHITECTURES[fmt] == ARCHITECTURES[own] else own


def _plan(model: nn.Module, layout: str) -> tuple[Plan, dict[str, torch.Tensor]]:
    spec = model.spec  # type: ignore[attr-defined]
    state = model.state_dict()
    return bind(format_for(layout, spec), spec, {k: tuple(v.shape) for k, v in state.items()}), state


def external_state(model: nn.Module, layout: str) -> dict[str, torch.Tensor]:
    """The model's tensors under the names (and in the layout) of `layout`."""
    plan, state = _plan(model, layout)
    return dict(plan.to_external(state))


def _dtype(model: nn.Module) -> torch.dtype | None:
    return next((p.dtype for p in model.parameters()), None)


def _save_tokenizer(model: nn.Module, folder: Path) -> None:
    tok = getattr(model, "tokenizer", None)
    if tok is not None and hasattr(tok, "save"):
        tok.save(folder)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def write_checkpoint_files(model: nn.Module, folder: Path, *, layout: str | None = None,
                           max_shard_size: int = 5 * 2**30, repo_id: str | None = None,
                           progress: bool | None = None, card: bool = True) -> str:
    """Tensors (+ index), config.json where transformers runs the spec, tokenizer, card, into
    `folder` (zoo.yaml is the caller's: it lists these files). Returns the layout written."""
    from ..card import model_card
    from ..weights import save_sharded

    spec: ModelSpec = model.spec  # type: ignore[attr-defined]
    layout = layout or default_layout(spec)
    fmt = format_for(layout, spec)
    if fmt.storage != "safetensors":
        from .transforms import FormatError

        raise FormatError(f"layout {layout!r} is stored as {fmt.storage}; zoo checkpoints hold safetensors "
                          f"(export to it with `zoo convert --to meta`)")
    state = external_state(model, layout)
    save_sharded(state, folder, max_shard_size, metadata={"zoo_fingerprint": spec.fingerprint(), "zoo_layout": layout},
                 progress=progress)
    reason = hf_unsupported(spec) or (None if layout in ARCHITECTURES else f"its tensors use zoo's {layout} names")
    if reason is None:
        _write_json(folder / "config.json", to_hf_config(spec, _dtype(model)))
        _write_json(folder / "generation_config.json", generation_config(spec))
    _save_tokenizer(model, folder)
    if card:
        files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}
        files["zoo.yaml"] = 0
        text = model_card(spec, params=sum(t.numel() for t in state.values()), layout=layout,
                          hf_loadable=reason is None, hf_reason=reason, repo_id=repo_id,
                          files={k: v for k, v in files.items() if k != "zoo.yaml"},
                          dtype=str(_dtype(model)).removeprefix("torch."))
        (folder / "README.md").write_text(text, encoding="utf-8")
    return layout


def export_hf(model: nn.Module, path: str | Path, *, max_shard_size: int | str = 5 * 2**30, overwrite: bool = True,
              progress: bool | None = None) -> Path:
    """A plain transformers folder (no zoo.yaml): safetensors under transformers' names,
    config.json, generation_config.json, tokenizer."""
    spec: ModelSpec = model.spec  # type: ignore[attr-defined]
    why = hf_unsupported(spec)
    if why:
        from .transforms import FormatError

        raise FormatError(f"{spec.name}: transformers cannot run it ({why})")
    layout = default_layout(spec)
    with atomic_folder(Path(path), overwrite) as tmp:
        write_checkpoint_files(model, tmp, layout=layout, max_shard_size=parse_size(max_shard_size), progress=progress,
                               card=False)
    return Path(path).absolute()


def meta_layout(spec: ModelSpec) -> str:
    """meta-mtp for multi-token models (extra_heads), else meta."""
    return "meta-mtp" if spec.arch.heads.kind == "multi_token" else "meta"


def export_meta(model: nn.Module, path: str | Path, *, shards: int = 1, overwrite: bool = True) -> Path:
    """Meta's layout: consolidated.NN.pth (`shards` model-parallel pieces) + params.json + tokenizer."""
    from .meta import params_from_spec, write_meta

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
    from .mistral import mistral_params, write_mistral

    params = mistral_params(model.spec)  # type: ignore[attr-defined]
    plan, state = _plan(model, "mistral")
    with atomic_folder(Path(path), overwrite) as tmp:
        write_mistral(dict(plan.to_external(state)), params, tmp)
        _save_tokenizer(model, tmp)
    return Path(path).absolute()


def convert(src: str | Path, dst: str | Path, to: str, *, dtype: str | None = None, shards: int = 1,
            max_shard_size: int | str = 5 * 2**30, overwrite: bool = False, **load_kw: Any) -> Path:
    """Any loadable checkpoint (a folder in a known format, a catalog name, a Hub repo) -> `to`:
    'hf' (transformers folder), 'meta' (consolidated.*.pth), 'mistral' (consolidated.safetensors)
    or 'zoo' (zoo's own folder)."""
    import zoo

    model = zoo.load(src, dtype=dtype, **load_kw)
    if to == "hf":
        return export_hf(model, dst, max_shard_size=max_shard_size, overwrite=overwrite)
    if to == "meta":
        return export_meta(model, dst, shards=shards, overwrite=overwrite)
    if to == "mistral":
        return export_mistral(model, dst, overwrite=overwrite)
    if to == "zoo":
        return model.save(dst, max_shard_size=max_shard_size, overwrite=overwrite)  # type: ignore[attr-defined]
    raise ValueError(f"convert: --to {to!r}; expected hf, meta, mistral or zoo")
