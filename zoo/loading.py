"""From a name to a loaded model: find the folder (local, or the Hub cache), recognise its
format, build the model on the meta device, check every key and shape against the IR (all
problems reported at once, nothing allocated yet), then stream the tensors in one at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .checkpoint import CheckpointError, verify_files
from .compiler.schema import ModelSpec
from .formats import bind, format_for, open_checkpoint
from .weights import assign, check_loaded, parameter_slots


def resolve_source(name: str | Path, *, revision: str | None = None, token: str | bool | None = None,
                   cache_dir: str | Path | None = None, force_download: bool = False,
                   verify: bool | None = None) -> tuple[Path, ModelSpec | None]:
    """(local folder holding the checkpoint, the catalog spec if `name` was a catalog name)."""
    p = Path(name).expanduser()
    if p.is_dir():
        if revision is not None:
            raise CheckpointError(f"{name}: a local folder has no revisions (revision={revision!r})")
        return p, None
    if str(name).startswith((".", "/", "~")) or str(name).count("/") > 2:
        raise CheckpointError(f"{name}: no such checkpoint folder")
    shipped = bundled_folder(str(name))
    if shipped is not None and revision is None:
        return shipped, None
    from .hub import download

    return download(str(name), revision=revision, token=token, cache_dir=cache_dir, force_download=force_download,
                    verify=verify)


def bundled_folder(name: str) -> Path | None:
    """A model whose weights ship inside the package (zoo/models/NAME), e.g. tiny-code."""
    folder = Path(__file__).parent / "models" / name
    return folder if (folder / "zoo.yaml").is_file() else None


def load_tokenizer(folder: Path, spec: ModelSpec) -> Any:
    if spec.tokenizer is None:
        return None
    path = Path(folder) / spec.tokenizer.file
    if not path.is_file():
        return None
    if spec.tokenizer.kind == "sentencepiece":
        from .runtime.tokenizers import SentencePieceTokenizer

        return SentencePieceTokenizer.from_file(path)
    if spec.tokenizer.kind == "bpe":
        from .runtime.tokenizers import BPETokenizer

        return BPETokenizer.from_file(path)
    if spec.tokenizer.kind == "tekken":
        from .runtime.tokenizers.tekken import TekkenTokenizer

        return TekkenTokenizer.from_file(path)
    return None


def stream_in(net: nn.Module, plan: Any, source: Any, device: torch.device | str, dtype: torch.dtype | None,
              desc: str = "loading") -> None:
    """Per binding: read its tensors (views of the mapped file), transform, cast, move, assign.
    When no copy was needed the mapped pages *are* the parameter; otherwise they are dropped
    right away so the file never sits in memory beside the model."""
    from tqdm.auto import tqdm

    slots = parameter_slots(net)
    order = sorted(plan.bindings, key=lambda b: source.order_key(b.external[0]))
    with torch.no_grad():
        for b in tqdm(order, desc=desc, unit="tensor", disable=None, leave=False):
            outs = b.to_canonical([source.get(n) for n in b.external])
            zero_copy = False
            for name, t in zip(b.canonical, outs):
                zero_copy |= assign(slots[name], t, device, dtype)
            del outs
            if not zero_copy:
                for n in b.external:
                    source.release(n)
    check_loaded(net)


def load_folder(folder: Path, base_spec: ModelSpec | None, overrides: Sequence[str] = (), *,
                backend: str | None = None, device: str | torch.device = "cpu",
                dtype: torch.dtype | None = None, verify: bool | None = None) -> nn.Module:
    """Load a checkpoint folder in any known format (zoo, hf-llama, meta).

    `base_spec` (a catalog spec, overrides already applied) is used for folders that carry no
    zoo.yaml; `overrides` apply to the spec a folder carries.

    `verify`: None checks that every file zoo.yaml lists has its size (cheap); True also checks
    each file's sha256; False skips both. Safetensors headers are always checked against the
    file sizes."""
    from . import api
    from .model import as_zoo_model

    folder = Path(folder)
    ckpt = open_checkpoint(folder, base_spec)
    if ckpt.files and verify is not False:
        verify_files(folder, ckpt.files, checksums=bool(verify))
    spec = ckpt.spec if ckpt.spec is base_spec else api.spec(ckpt.spec, overrides)
    compiled, net = api._lower(spec, backend, device)  # on the meta device: nothing allocated
    plan = bind(format_for(ckpt.layout, spec), spec, {n: p.sizes for n, p in compiled.ir.parameters()})
    report = plan.check(ckpt.source.shapes(plan.shard_dims()))
    if not report.ok:
        err = CheckpointError(report.render(f"{folder} ({ckpt.kind} checkpoint, {ckpt.layout} names)"))
        err.report = report  # type: ignore[attr-defined]  # every name, for code that wants them all
        raise err
    stream_in(net, plan, ckpt.source, device, dtype, desc=f"loading {folder.name}")
    ckpt.source.close()
    return as_zoo_model(net, compiled, load_tokenizer(ckpt.tokenizer_dir, spec))
