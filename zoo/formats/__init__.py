"""Checkpoint formats: YAML key maps (specs/formats/), their transforms, and the readers that
find out what a folder holds.

A folder is recognised by what it carries, in this order: `zoo.yaml` (a zoo checkpoint, its
layout named inside), `params.json` / `consolidated.*.pth` (Meta), `config.json` whose
`model_type` transformers shares with a zoo format (hf-llama). Each gives a spec and a tensor
source; binding the format's key map to the model's IR (`Checkpoint.plan`) says what the
source must hold.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol

import torch

from ..checkpoint import (
    CANONICAL,
    SPEC_FILE,
    CheckpointError,
    SafetensorsSource,
    read_document,
)
from ..compiler.paths import unsafe_entries
from ..compiler.schema import ModelSpec
from .gguf import GGUFSource, gguf_in_folder, is_gguf_file, open_gguf
from .hf import model_types, spec_from_hf_config
from .hf.family import difference
from .keymap import (
    Format,
    Plan,
    Rule,
    bind,
    format_names,
    get_format,
    parse_format,
    plan_for,
)
from .meta import MetaSource, read_params, spec_from_params
from .mistral import (
    TOKENIZER_FILE,
    MistralSource,
    is_mistral_folder,
    spec_from_mistral_params,
)
from .transforms import FormatError

__all__ = ["Checkpoint", "Format", "FormatError", "Plan", "bind", "canonical_format", "detect", "format_names",
           "get_format", "is_gguf_file", "open_checkpoint", "parse_format", "plan_for"]


class TensorSource(Protocol):
    where: str

    def shapes(self, shard_dims: dict[str, int | None] | None = None) -> dict[str, tuple[int, ...]]: ...
    def get(self, name: str) -> torch.Tensor: ...
    def release(self, name: str) -> None: ...
    def order_key(self, name: str) -> tuple[str, int]: ...
    def close(self) -> None: ...


def canonical_format(names: Iterable[str]) -> Format:
    """The identity map: the zoo's canonical names stored as they are."""
    return Format(CANONICAL, "safetensors", tuple(Rule((n,), (n,)) for n in names), description="zoo canonical names")


def format_for(layout: str, canonical_names: Iterable[str]) -> Format:
    """The key map of `layout`; for the canonical layout, the identity over the model's names."""
    return canonical_format(canonical_names) if layout == CANONICAL else get_format(layout)


def detect(folder: Path) -> str:
    """'zoo', 'mistral', 'meta' or a transformers format name ('hf-llama', 'hf-llava'), from the
    files a folder holds."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    if (folder / SPEC_FILE).is_file():
        return "zoo"
    if is_mistral_folder(folder):  # params.json + consolidated.safetensors (Mistral NeMo, Pixtral)
        return "mistral"
    if (folder / "params.json").is_file() or any(folder.glob("consolidated.*.pth")):
        return "meta"
    if any(folder.glob("*.gguf")) and not any(folder.glob("*.safetensors")):  # llama.cpp's one-file format
        return "gguf"
    cfg_path = folder / "config.json"
    if cfg_path.is_file():
        model_type = _read_json(cfg_path).get("model_type")
        known = model_types()
        if not isinstance(model_type, str) or model_type not in known:
            raise CheckpointError(f"{cfg_path}: transformers model_type {model_type!r} has no zoo format yet "
                                  f"(known: {', '.join(sorted(known))})")
        if not any(folder.glob("*.safetensors")) and any(folder.glob("*.bin")):
            raise CheckpointError(f"{folder}: only pytorch_model*.bin (pickle) weights; zoo reads safetensors. "
                                  "Re-save with transformers' save_pretrained(safe_serialization=True)")
        return known[model_type]
    raise CheckpointError(f"{folder}: not a checkpoint: no {SPEC_FILE}, no config.json, no params.json + "
                          "consolidated.*.pth")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        out = json.loads(path.read_text())
        assert isinstance(out, dict)
        return out
    except (OSError, ValueError, AssertionError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError: ValueErrors
        raise CheckpointError(f"{path}: not a JSON object ({type(e).__name__}: {str(e)[:200]})") from None


@dataclass
class Checkpoint:
    """A folder, what it is, the spec it carries and where its tensors come from."""

    folder: Path
    kind: str  # zoo | meta | hf-llama …
    spec: ModelSpec
    layout: str  # the format the tensors are stored in (or canonical)
    source: TensorSource
    tokenizer_dir: Path
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # zoo.yaml's manifest
    tokenizer: Any = None  # one the checkpoint carries inside (GGUF's tokenizer.ggml.*), not as a file

    def plan(self, spec: ModelSpec, canonical_shapes: Mapping[str, tuple[int, ...]]) -> Plan:
        """The key map binding the source's tensors to a model of `spec` whose canonical names
        and shapes are `canonical_shapes` (its IR's): the layout, or the first of its
        alternatives whose every tensor the source holds (Mixtral's per-expert or fused
        experts); the layout itself when none fits, so the key check reports against it."""
        fmt = format_for(self.layout, canonical_shapes)
        if fmt.alternatives:
            names = set(self.source.shapes())
            for candidate in (self.layout, *fmt.alternatives):
                plan = bind(get_format(candidate), spec, canonical_shapes)
                if set(plan.external_shapes()) <= names:
                    return plan
        return bind(fmt, spec, canonical_shapes)


def _tokenizer_file(folder: Path, name: str = "tokenizer.model") -> Path | None:
    for d in (folder, folder.parent):  # Meta's downloads keep tokenizer.model one level up
        if (d / name).is_file():
            return d
    return None


def config_disagreement(spec: ModelSpec, from_cfg: ModelSpec) -> str | None:
    """Where a spec's math differs from what a folder's config.json describes (None: it does
    not): their runtime records, every block, compared; the context length may differ (a spec
    can run shorter or longer than the config's max_position_embeddings)."""
    ours, theirs = (a.config(a.ir("")) for a in (spec.arch.language_model(), from_cfg.arch.language_model()))
    return difference(ours, dataclasses.replace(theirs, max_seq_len=ours.max_seq_len))


def open_checkpoint(folder: Path, base_spec: ModelSpec | None = None, root: Path | None = None,
                    layout: str | None = None) -> Checkpoint:
    """Recognise `folder` and open its tensors (headers and maps only: nothing is read yet).
    No file it reads may lie outside `root` (default: the folder itself; a Hub cache snapshot's
    files are links into its repo's blobs): a symlink out is refused before anything is read.

    `layout` (a format name or YAML path) reads a transformers-style folder (config.json +
    safetensors) with that key map and `base_spec` (required with it), for a model_type zoo does
    not know; a config.json zoo can read must still describe `base_spec`'s math."""
    folder = Path(folder)
    if layout is not None:
        return _open_with_layout(folder, base_spec, root, layout)
    if is_gguf_file(folder):
        return _open_gguf(folder, folder.parent, base_spec)
    kind = detect(folder)
    _refuse_unsafe(folder, root)
    if kind == "gguf":
        return _open_gguf(gguf_in_folder(folder), folder, base_spec)
    name = folder.resolve().name
    if kind == "zoo":
        doc = read_document(folder)
        return Checkpoint(folder, kind, doc.spec, doc.layout, SafetensorsSource(folder, root=root), folder, doc.files)
    if kind == "mistral":
        tok = TOKENIZER_FILE if (folder / TOKENIZER_FILE).is_file() else None
        spec = base_spec or spec_from_mistral_params(read_params(folder), name, tok)
        return Checkpoint(folder, kind, spec, "mistral", MistralSource(folder), folder)
    if kind == "meta":
        params = read_params(folder)
        source = MetaSource(folder)
        tok_dir = _tokenizer_file(folder) or folder
        spec = base_spec
        if spec is None:
            vocab = params.get("vocab_size", -1)
            if not isinstance(vocab, int) or isinstance(vocab, bool) or vocab <= 0:  # Llama 2 writes -1
                shape = source.raw_shape("tok_embeddings.weight")
                if shape is None:
                    raise CheckpointError(f"{folder}: params.json gives no vocab_size and there is no tok_embeddings")
                vocab = shape[0]
            spec = spec_from_params(params, name, vocab, "tokenizer.model" if _tokenizer_file(folder) else None)
        layout = "meta-mtp" if spec.arch.heads.head_blocks else _layout("meta", base_spec)
        return Checkpoint(folder, kind, spec, layout, source, tok_dir)
    cfg = _read_json(folder / "config.json")
    tok_file = next((f for f in ("tokenizer.model", "tekken.json") if (folder / f).is_file()), None)
    from_cfg = spec_from_hf_config(cfg, name, tok_file)
    spec = from_cfg
    if base_spec is not None:
        spec = base_spec
        why = config_disagreement(base_spec, from_cfg)
        if why:
            raise CheckpointError(f"{folder}/config.json describes other math than the spec {base_spec.name}: {why}")
    return Checkpoint(folder, kind, spec, _layout(kind, base_spec), SafetensorsSource(folder, root=root), folder)


def _open_gguf(path: Path, folder: Path, base_spec: ModelSpec | None) -> Checkpoint:
    """One .gguf file: spec (and tokenizer) from its metadata, tensors from its data section."""
    opened = open_gguf(path, base_spec)
    return Checkpoint(folder, "gguf", opened.spec, "gguf", GGUFSource(opened.file), folder, tokenizer=opened.tokenizer)


def _refuse_unsafe(folder: Path, root: Path | None) -> None:
    out = unsafe_entries(folder, root)
    if out:
        raise CheckpointError(f"{folder}: holds what a checkpoint may not (links out of it, special files): "
                              f"{', '.join(out[:3])}")


def _open_with_layout(folder: Path, base_spec: ModelSpec | None, root: Path | None, layout: str) -> Checkpoint:
    if base_spec is None:
        raise CheckpointError(f"{folder}: a format ({layout}) needs a spec too: the spec says what to build, "
                              "the format where its tensors are")
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    _refuse_unsafe(folder, root)
    fmt = get_format(layout)
    if fmt.storage != "safetensors":
        raise CheckpointError(f"{folder}: format {fmt.name} is stored as {fmt.storage}; a spec and format pair "
                              "reads safetensors folders")
    if (folder / "config.json").is_file():
        cfg = _read_json(folder / "config.json")
        if cfg.get("model_type") in model_types():
            why = config_disagreement(base_spec, spec_from_hf_config(cfg, folder.resolve().name))
            if why:
                raise CheckpointError(f"{folder}/config.json describes other math than the spec "
                                      f"{base_spec.name}: {why}")
    return Checkpoint(folder, fmt.name, base_spec, layout, SafetensorsSource(folder, root=root), folder)


def _layout(detected: str, base_spec: ModelSpec | None) -> str:
    """The format to read a foreign folder with: the one its catalog spec names (e.g. meta-mtp,
    a variant of meta) when stored the same way, else the one detected."""
    named = base_spec.weights.format if base_spec is not None and base_spec.weights else None
    if named and named != detected and get_format(named).storage == get_format(detected).storage:
        return named
    return detected
