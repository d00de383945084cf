"""The public API: zoo.list, zoo.spec, zoo.compile, zoo.build, zoo.load."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from . import catalog
from .compiler import Compiled
from .compiler import compile as _compile
from .compiler.lowering import lower
from .compiler.schema import ModelSpec
from .loading import load_folder, resolve_source  # imported with zoo: a load pays no import on its first call
from .model import as_zoo_model, materialize
from .runtime import backends

SpecLike = str | Path | ModelSpec


def list_models() -> list[catalog.Entry]:
    """Every loadable model in the catalog."""
    return [e for e in catalog.entries() if not e.abstract]


def spec(name: SpecLike, overrides: Sequence[str] = ()) -> ModelSpec:
    """A validated spec: catalog name, YAML path, checkpoint folder, or a ModelSpec (overrides apply)."""
    if isinstance(name, ModelSpec):
        if not overrides:
            return name
        from .compiler.frontend import RawSpec, compile_spec

        return compile_spec(RawSpec(name.model_dump(mode="json"), {}, f"<{name.name}>"), overrides)
    p = Path(name)
    if p.is_dir():
        from .formats import open_checkpoint

        return spec(open_checkpoint(p).spec, overrides)
    return catalog.get_spec(name, overrides)


def _dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        out = getattr(torch, str(dtype))
    except AttributeError:
        out = None
    if not isinstance(out, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
    return out


def compile(name: SpecLike, overrides: Sequence[str] = (), *, backend: str | None = None,  # noqa: A001
            device: str | torch.device = "cpu") -> Compiled:
    """Check, account and plan a model for `backend` on `device` without allocating anything."""
    return _compile(spec(name, overrides), backend, device)


def _lower(s: ModelSpec, backend: str | None, device: torch.device | str) -> tuple[Compiled, nn.Module]:
    compiled = _compile(s, backend, device)
    be = backends.get(compiled.backend.name, device)  # raises BackendUnavailable with the reason
    return compiled, lower(compiled.ir, be)


def build(name: SpecLike, overrides: Sequence[str] = (), *, backend: str | None = None,
          device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None,
          init: str | None = "random", seed: int | None = 0, tokenizer: Any = None) -> nn.Module:
    """A model from its spec. init="random" allocates and initializes; init="meta" allocates nothing."""
    compiled, net = _lower(spec(name, overrides), backend, device)
    if init == "random":
        materialize(net, device, _dtype(dtype), seed)
    elif init not in (None, "meta"):
        raise ValueError(f"init must be 'random' or 'meta', got {init!r}")
    return as_zoo_model(net, compiled, tokenizer)


def load(name: str | Path, overrides: Sequence[str] = (), *, backend: str | None = None,
         device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None, revision: str | None = None,
         token: str | bool | None = None, cache_dir: str | Path | None = None, force_download: bool = False,
         verify: bool | None = None) -> nn.Module:
    """A model with weights, from any of:

    - a local folder: zoo's own (zoo.yaml), a transformers folder (config.json + safetensors) or
      Meta's consolidated.*.pth + params.json; the format is detected;
    - a catalog name (`codellama-7b`): its spec, and the weights from the Hub repo and revision
      the spec pins (`weights:`);
    - a Hub repo id (`org/my-model`), at `revision` (branch, tag or commit sha).

    Hub downloads go through huggingface_hub's cache (`cache_dir`, default HF_HUB_CACHE), work
    offline from it (HF_HUB_OFFLINE=1), and are checked against their content hashes once.
    `dtype` casts as tensors stream in (default: the checkpoint's); `verify=True` re-checks every
    file's sha256; `token` reads private repos (default: HF_TOKEN or the stored login).
    """
    folder, base_spec = resolve_source(name, revision=revision, token=token, cache_dir=cache_dir,
                                       force_download=force_download, verify=verify)
    if base_spec is not None and overrides:  # from the YAML again, so interpolations follow the overrides
        base_spec = spec(str(name), overrides)
    return load_folder(folder, base_spec, overrides, backend=backend, device=device, dtype=_dtype(dtype),
                       verify=verify)
