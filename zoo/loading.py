"""From a name to a loaded model, on one straight path:

    resolve the source (a folder, the package's bundled models, a catalog name or Hub repo)
    → open the checkpoint (its format detected once)
    → the spec (the checkpoint's, or the catalog's; overrides applied)
    → compile and lower once (one IR, one backend; on the meta device: nothing allocated)
    → bind the format's key map to that IR and check every key and shape (all problems at once)
    → stream the tensors in one at a time.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from . import catalog
from .checkpoint import SPEC_FILE, CheckpointError, read_document, verify_files
from .checkpoint.atomic import folder_lock
from .checkpoint.finite import all_finite, known_finite, remember_finite
from .checkpoint.quantize import stored_shapes
from .checkpoint.tensors import (
    NonFiniteWeightsWarning,
    assign,
    check_loaded,
    parameter_slots,
)
from .compiler.errors import UsageError, ZooError
from .compiler.frontend import override_spec
from .compiler.paths import escape_reason
from .compiler.schema import ModelSpec
from .formats import is_gguf_file, open_checkpoint
from .hub import download, snapshot_root
from .model import as_zoo_model, is_folder, lower_spec
from .runtime.tokenizers import BPETokenizer, SentencePieceTokenizer
from .runtime.tokenizers.tekken import TekkenTokenizer

TOKENIZERS = {"sentencepiece": SentencePieceTokenizer, "bpe": BPETokenizer, "tekken": TekkenTokenizer}


def resolve_source(name: str | Path, *, revision: str | None = None, token: str | bool | None = None,
                   cache_dir: str | Path | None = None, force_download: bool = False,
                   verify: bool | None = None) -> tuple[Path, ModelSpec | None]:
    """(local folder holding the checkpoint, the catalog spec if `name` was a catalog name)."""
    try:
        p = Path(name).expanduser()
    except RuntimeError:  # ~user that does not exist
        p = Path(name)
    if is_folder(p) or is_gguf_file(p):  # a folder, or one llama.cpp .gguf file
        if revision is not None:
            raise CheckpointError(f"{name}: a local folder has no revisions (revision={revision!r})")
        return p, None
    if str(name).startswith((".", "/", "~")) or str(name).count("/") > 2:
        raise CheckpointError(f"{name}: no such checkpoint folder")
    shipped = bundled_folder(str(name))
    if shipped is not None and revision is None:
        return shipped, None
    return download(str(name), revision=revision, token=token, cache_dir=cache_dir, force_download=force_download,
                    verify=verify)


def bundled_folder(name: str) -> Path | None:
    """A model whose weights ship inside the package (zoo/models/NAME), e.g. tiny-code."""
    if "/" in name or name.startswith("."):
        return None
    folder = Path(__file__).parent / "models" / name
    return folder if is_folder(folder) and (folder / "zoo.yaml").is_file() else None


def load_tokenizer(folder: Path, spec: ModelSpec, root: Path | None = None) -> Any:
    """The tokenizer the spec names, from `folder` (None when the spec names none or the file
    is not there); a name that leads outside the folder (or `root`) is a CheckpointError."""
    if spec.tokenizer is None:
        return None
    why = escape_reason(folder, spec.tokenizer.file, root)
    if why:
        raise CheckpointError(f"{folder}: tokenizer.file {why}")
    path = Path(folder) / spec.tokenizer.file
    cls = TOKENIZERS.get(spec.tokenizer.kind)
    return cls.from_file(path) if cls is not None and path.is_file() else None


NONFINITE = ("warn", "error", "ignore")


def stream_in(net: nn.Module, plan: Any, source: Any, device: torch.device | str, dtype: torch.dtype | None,
              desc: str = "loading", on_nonfinite: str = "warn") -> list[str]:
    """Per binding: read its tensors (views of the mapped file), transform, cast, move, assign.
    When no copy was needed the mapped pages *are* the parameter; otherwise they are dropped
    right away so the file never sits in memory beside the model. Every parameter is checked
    for NaN and infinity as it lands (one reduction); the names of those that hold any are
    returned, warned about or refused (`on_nonfinite`)."""
    if on_nonfinite not in NONFINITE:
        raise UsageError(f"on_nonfinite must be one of {', '.join(NONFINITE)}, got {on_nonfinite!r}")
    slots = parameter_slots(net)
    order = sorted(plan.bindings, key=lambda b: source.order_key(b.external[0]))
    files = getattr(source, "files", {})  # tensor name -> file, for sources that map files
    checked = {p: known_finite(p) for p in set(files.values())} if on_nonfinite != "ignore" else {}
    bad: list[str] = []
    with torch.no_grad():
        for b in tqdm(order, desc=desc, unit="tensor", disable=None, leave=False):
            outs = b.to_canonical([source.get(n) for n in b.external])
            for name, t in zip(b.canonical, outs):
                mod, attr, _ = slots[name]
                want = mod._parameters[attr]
                if t.is_floating_point() != want.is_floating_point() or (  # integers: quantized weights, exactly
                        not t.is_floating_point() and t.dtype != want.dtype):
                    raise CheckpointError(f"{source.where}: {', '.join(b.external)} is {str(t.dtype)[6:]}; the model "
                                          f"wants {str(mod._parameters[attr].dtype)[6:]} (a corrupt or foreign header?)")
            zero_copy = False
            origin = [files.get(n) for n in b.external]
            for name, t in zip(b.canonical, outs):
                copied = not assign(slots[name], t, device, dtype)
                zero_copy |= not copied
                if on_nonfinite == "ignore" or (not copied and all(checked.get(p) for p in origin)):
                    continue  # this version of the file was found finite before
                mod, attr, _ = slots[name]
                if not all_finite(mod._parameters[attr]):
                    bad.append(name)
                    checked.update({p: False for p in origin if p is not None})
            del outs
            if not zero_copy:
                for n in b.external:
                    source.release(n)
    check_loaded(net)
    if not bad:
        for p in checked:
            remember_finite(p)
    if bad:
        what = f"{len(bad)} weight tensor(s) hold NaN or infinity: {', '.join(bad[:5])}" + (" …" if len(bad) > 5 else "")
        if on_nonfinite == "error":
            raise CheckpointError(f"{source.where}: {what}")
        warnings.warn(f"{source.where}: {what} (on_nonfinite='error' refuses such checkpoints)",
                      NonFiniteWeightsWarning, stacklevel=4)
    return bad


def load_folder(folder: Path, base_spec: ModelSpec | None, overrides: Sequence[str] = (), *,
                backend: str | None = None, device: str | torch.device = "cpu",
                dtype: torch.dtype | None = None, verify: bool | None = None, on_nonfinite: str = "warn",
                layout: str | None = None) -> nn.Module:
    """Load a checkpoint folder in any known format (zoo, transformers, Meta, Mistral).

    `base_spec` (a catalog spec, overrides already applied) is used for folders that carry no
    zoo.yaml; `overrides` apply to the spec a folder carries.

    `verify`: None checks that every file zoo.yaml lists has its size (cheap); True also checks
    each file's sha256; False skips both. Safetensors headers are always checked against the
    file sizes. `layout`: read the folder's tensors with this format (name or YAML path) and
    `base_spec`, for a layout zoo does not detect."""
    folder = Path(folder)
    root = snapshot_root(folder)
    with folder_lock(folder, shared=True):  # a save swapping this folder waits until its files are open
        ckpt = open_checkpoint(folder, base_spec, root, layout)
        if ckpt.files and verify is not False:
            verify_files(folder, ckpt.files, checksums=bool(verify))
    spec = ckpt.spec if ckpt.spec is base_spec else override_spec(ckpt.spec, overrides)
    compiled, net = lower_spec(spec, backend, device)  # on the meta device: nothing allocated
    plan = ckpt.plan(spec, stored_shapes(compiled, net))  # a quantized spec's integers and scales
    report = plan.check(ckpt.source.shapes(plan.shard_dims()))
    if not report.ok:
        err = CheckpointError(report.render(f"{folder} ({ckpt.kind} checkpoint, {plan.format.name} names)"))
        err.report = report  # type: ignore[attr-defined]  # every name, for code that wants them all
        raise err
    dtype = dtype if dtype is not None else getattr(ckpt.source, "load_dtype", None)  # GGUF: one float type
    stream_in(net, plan, ckpt.source, device, dtype, desc=f"loading {folder.name}", on_nonfinite=on_nonfinite)
    ckpt.source.close()
    return as_zoo_model(net, compiled, ckpt.tokenizer or load_tokenizer(ckpt.tokenizer_dir, spec, root))


def load(name: str | Path, overrides: Sequence[str] = (), *, backend: str | None = None,
         device: str | torch.device = "cpu", dtype: torch.dtype | None = None, revision: str | None = None,
         token: str | bool | None = None, cache_dir: str | Path | None = None, force_download: bool = False,
         verify: bool | None = None, on_nonfinite: str = "warn", spec: str | Path | ModelSpec | None = None,
         layout: str | None = None, tp: int = 1) -> nn.Module:
    """`zoo.load` (see its docstring): the source resolved, then `load_folder` (`load_folder_tp`
    with tp > 1)."""
    if not isinstance(tp, int) or isinstance(tp, bool) or tp < 1:
        raise UsageError(f"tp must be a whole number >= 1, got {tp!r}")
    folder, base_spec = resolve_source(name, revision=revision, token=token, cache_dir=cache_dir,
                                       force_download=force_download, verify=verify)
    if spec is not None:  # the user's spec replaces the folder's or the catalog's
        base_spec = spec if isinstance(spec, ModelSpec) else catalog.get_spec(spec, overrides)
        if isinstance(spec, ModelSpec) and overrides:
            base_spec = override_spec(spec, overrides)
    elif base_spec is not None and overrides:  # from the YAML again, so interpolations follow the overrides
        base_spec = catalog.get_spec(str(name), overrides)
    if tp > 1:
        net = load_folder_tp(folder, base_spec, tp, overrides, backend=backend, device=device, dtype=dtype,
                             layout=layout)
    else:
        net = load_folder(folder, base_spec, overrides, backend=backend, device=device, dtype=dtype, verify=verify,
                          on_nonfinite=on_nonfinite, layout=layout)
    net.weights_from = weights_origin(name, folder, base_spec)  # type: ignore[assignment]
    return net


def weights_origin(name: str | Path, folder: Path, base_spec: ModelSpec | None) -> str | None:
    """The Hub repo the weights loaded from `folder` come from, for a card's `base_model`: the
    repo downloaded, a Hub cache snapshot's repo, or what a local zoo folder's zoo.yaml records."""
    if not is_folder(name) and not is_gguf_file(name) and bundled_folder(str(name)) is None:  # downloaded by name
        if base_spec is not None and base_spec.weights is not None:
            return base_spec.weights.repo
        return "/".join(str(name).split("/")[:2])
    if (folder / SPEC_FILE).is_file():
        try:
            recorded = read_document(folder).base_model
        except ZooError:
            recorded = None
        if recorded:
            return recorded
    root = snapshot_root(folder)
    if root is not None and root.name.startswith("models--"):
        return root.name.removeprefix("models--").replace("--", "/", 1)
    return None


def load_folder_tp(folder: Path, base_spec: ModelSpec | None, tp: int, overrides: Sequence[str] = (), *,
                   backend: str | None = None, device: str | torch.device = "cpu",
                   dtype: torch.dtype | None = None, layout: str | None = None) -> nn.Module:
    """Tensor-parallel load under an initialized process group of `tp` ranks: built on meta,
    split by the compiler's sharding plan (DTensor), and each rank reads only its slices: a
    tensor stored as the canonical one is sliced in the checkpoint's private file map (only the
    slice's pages are read; safe_open's get_slice would view the same pages but keep every page
    it touched mapped until the file closes), a tensor the format transforms (transformers' q/k
    RoPE order, stacked experts) is read whole, transformed and sliced, one at a time; each
    slice is copied and the file's pages dropped (`release`), so no rank ever holds the whole
    model (bench/tp_memory.py measures it)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from .compiler.passes.sharding import plan_sharding
    from .runtime.distributed import load_tp_slices, parallelize

    if not dist.is_initialized() or dist.get_world_size() != tp:
        raise UsageError(f"tp={tp} needs a process group of {tp} ranks (run under torchrun --nproc-per-node {tp})")
    folder = Path(folder)
    root = snapshot_root(folder)
    with folder_lock(folder, shared=True):
        ckpt = open_checkpoint(folder, base_spec, root, layout)
    spec = ckpt.spec if ckpt.spec is base_spec else override_spec(ckpt.spec, overrides)
    if spec.quantization is not None:
        raise UsageError(f"{folder}: tensor parallel loads float weights; this checkpoint is stored as "
                         f"{spec.quantization.describe()}")
    compiled, net = lower_spec(spec, backend, device)
    sharding = plan_sharding(compiled.ir, tp)
    plan = ckpt.plan(spec, {n: p.sizes for n, p in compiled.ir.parameters()})
    report = plan.check(ckpt.source.shapes(plan.shard_dims()))
    if not report.ok:
        raise CheckpointError(report.render(f"{folder} ({ckpt.kind} checkpoint, {plan.format.name} names)"))
    dev = torch.device(device)
    parallelize(net, sharding, init_device_mesh(dev.type, (tp,)))
    binding = {c: b for b in plan.bindings for c in b.canonical}

    def read(name: str, index: Any) -> torch.Tensor:
        b = binding[name]
        if index is not None and not b.chain.steps and len(b.external) == 1:
            t = ckpt.source.get(b.external[0])[index]  # a view of the file's map: only the slice's pages are read
        else:
            t = b.to_canonical([ckpt.source.get(n) for n in b.external])[b.canonical.index(name)]
            t = t if index is None else t[index]
        t = t.clone(memory_format=torch.contiguous_format)  # this rank's own copy ...
        for n in b.external:
            ckpt.source.release(n)  # ... and the file's pages dropped again
        return t

    load_tp_slices(net, sharding, read, dev, dtype)
    ckpt.source.close()
    return as_zoo_model(net, compiled, load_tokenizer(ckpt.tokenizer_dir, spec, root))
