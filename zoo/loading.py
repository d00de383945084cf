"""From a name to a loaded model: find the folder (local, or the Hub cache), read its spec,
build on meta, check keys and shapes, then stream the weights in."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .checkpoint import SPEC_FILE, CheckpointError, read_spec
from .compiler.schema import ModelSpec
from .weights import compare_keys, load_into, read_shapes, safetensors_files, stream_safetensors


def resolve_source(name: str | Path, **kw: Any) -> tuple[Path, ModelSpec | None]:
    """(local folder holding the checkpoint, the catalog spec if `name` was a catalog name)."""
    p = Path(name)
    if p.is_dir():
        return p, None
    if str(name).startswith((".", "/")) or p.suffix:
        raise CheckpointError(f"{name}: no such checkpoint folder")
    from .hub import download

    return download(str(name), **kw)


def load_tokenizer(folder: Path, spec: ModelSpec) -> Any:
    if spec.tokenizer is None:
        return None
    path = Path(folder) / spec.tokenizer.file
    if not path.is_file():
        return None
    if spec.tokenizer.kind == "sentencepiece":
        from .runtime.tokenizers import SentencePieceTokenizer

        return SentencePieceTokenizer.from_file(path)
    return None


def load_folder(folder: Path, base_spec: ModelSpec | None, overrides: Sequence[str] = (), *,
                backend: str | None = None, device: str | torch.device = "cpu",
                dtype: torch.dtype | None = None) -> nn.Module:
    from . import api
    from .model import as_zoo_model

    folder = Path(folder)
    if not (folder / SPEC_FILE).is_file():
        from .formats import load_foreign

        return load_foreign(folder, base_spec, overrides, backend=backend, device=device, dtype=dtype)
    spec = api.spec(read_spec(folder), overrides)
    compiled, net = api._lower(spec, backend, device)
    files = safetensors_files(folder)
    expected = {n: p.sizes for n, p in compiled.ir.parameters()}
    report = compare_keys(expected, read_shapes(files))
    if not report.ok:
        raise CheckpointError(report.render(str(folder)))
    load_into(net, stream_safetensors(files, expected), device, dtype)
    return as_zoo_model(net, compiled, load_tokenizer(folder, spec))
