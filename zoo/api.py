"""The public API: zoo.list_models, zoo.spec, zoo.compile, zoo.build, zoo.load, zoo.convert,
zoo.push."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from . import catalog, hub, loading
from .checkpoint.quantize import (
    QuantizeArg,
    quantization_request,
    quantize_model,
    with_quantization,
)
from .compiler import Compiled
from .compiler import compile as _compile
from .compiler.errors import UsageError
from .compiler.frontend import override_spec
from .compiler.schema import ModelSpec
from .formats import is_gguf_file, open_checkpoint
from .formats.export import export
from .model import (
    as_zoo_model,
    check_name,
    is_folder,
    lower_spec,
    materialize,
    parse_device,
    parse_dtype,
)

SpecLike = str | Path | ModelSpec


def list_models() -> list[catalog.Entry]:
    """Every loadable model in the catalog."""
    return [e for e in catalog.entries() if not e.abstract]


def spec(name: SpecLike, overrides: Sequence[str] = ()) -> ModelSpec:
    """A validated spec: catalog name, YAML path, checkpoint folder, or a ModelSpec (overrides apply)."""
    name = check_name(name)
    if isinstance(name, ModelSpec):
        return override_spec(name, overrides)
    if is_folder(name) or is_gguf_file(name):
        return override_spec(open_checkpoint(Path(name)).spec, overrides)
    return catalog.get_spec(name, overrides)


def compile(name: SpecLike, overrides: Sequence[str] = (), *, backend: str | None = None,  # noqa: A001
            device: str | torch.device = "cpu") -> Compiled:
    """Check, account and plan a model for `backend` on `device` without allocating anything."""
    return _compile(spec(name, overrides), backend, parse_device(device))


def build(name: SpecLike, overrides: Sequence[str] = (), *, backend: str | None = None,
          device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None,
          init: str | None = "random", seed: int | None = 0, tokenizer: Any = None,
          quantize: QuantizeArg = None, group_size: int | None = None, symmetric: bool | None = None,
          skip: Sequence[str] | None = None) -> nn.Module:
    """A model from its spec. init="random" allocates and initializes; init="meta" allocates nothing.
    `quantize` ("int8", "int4" with `group_size` 32/64/128/256, `symmetric`, `skip` globs of
    linears kept float; or the spec's `quantization:` section): random float weights, then
    quantized (docs/quantization.md)."""
    if init not in ("random", "meta", None):
        raise UsageError(f"init must be 'random' or 'meta', got {init!r}")
    device = parse_device(device)
    the_spec = spec(name, overrides)
    section = quantization_request(quantize, group_size, symmetric, list(skip) if skip is not None else None)
    if section is not None:
        the_spec = with_quantization(the_spec, section)
    if init == "random" and the_spec.quantization is not None:  # float weights drawn, then quantized
        q = the_spec.quantization.model_dump(mode="json")
        model = build(with_quantization(the_spec, None), backend=backend, device=device, dtype=dtype, init=init,
                      seed=seed, tokenizer=tokenizer)
        return quantize_model(model, q)
    compiled, net = lower_spec(the_spec, backend, device)
    if init == "random":
        materialize(net, device, parse_dtype(dtype), seed)
    return as_zoo_model(net, compiled, tokenizer)


def load(name: str | Path, overrides: Sequence[str] = (), *, backend: str | None = None,
         device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None, revision: str | None = None,
         token: str | bool | None = None, cache_dir: str | Path | None = None, force_download: bool = False,
         verify: bool | None = None, on_nonfinite: str = "warn", spec: str | Path | ModelSpec | None = None,
         format: str | None = None, tp: int = 1, quantize: QuantizeArg = None, group_size: int | None = None,
         symmetric: bool | None = None, skip: Sequence[str] | None = None) -> nn.Module:
    """A model with weights, from any of:

    - a local folder: zoo's own (zoo.yaml), a transformers folder (config.json + safetensors) or
      Meta's consolidated.*.pth + params.json; the format is detected;
    - a catalog name (`codellama-7b`): its spec, and the weights from the Hub repo and revision
      the spec pins (`weights:`);
    - a Hub repo id (`org/my-model`), at `revision` (branch, tag or commit sha).

    Hub downloads go through huggingface_hub's cache (`cache_dir`, default HF_HUB_CACHE), work
    offline from it (HF_HUB_OFFLINE=1), and are checked against their content hashes once.
    `dtype` casts as tensors stream in (default: the checkpoint's); `verify=True` re-checks every
    file's sha256; `token` reads private repos (default: HF_TOKEN or the stored login). Weights
    holding NaN or infinity are named in a NonFiniteWeightsWarning (`on_nonfinite="error"`
    refuses them, `"ignore"` skips the check).

    `spec` (a catalog name, a YAML path or a ModelSpec) says what to build instead of what the
    folder's config says, and `format` (a key-map name or YAML path) where its tensors are: a new
    architecture's folder loads with no Python. A config.json zoo can read must still describe
    the spec's math (a CheckpointError says where it differs).

    `tp=N` under an initialized process group of N ranks (torchrun): the model split by the
    compiler's sharding plan (DTensor), each rank reading only its slices of the weights.

    `quantize="int8"` (per output channel) or `"int4"` (`group_size` 32 by default, 64, 128,
    256; `symmetric=False` for zero points; `skip`: globs of linears kept float, default
    `["output"]`): the float weights loaded, then the linears stored as integers with scales
    (docs/quantization.md). A quantized checkpoint (zoo.yaml with `quantization:`) loads as
    stored, without quantizing again.
    """
    if spec is not None and not isinstance(spec, ModelSpec):
        spec = check_name(spec)
    section = quantization_request(quantize, group_size, symmetric, list(skip) if skip is not None else None)
    if section is not None and tp > 1:
        raise UsageError("quantize= loads on one process; tensor parallel (tp > 1) needs float weights")
    model = loading.load(check_name(name), overrides, backend=backend, device=parse_device(device),
                        dtype=parse_dtype(dtype),
                        revision=revision,
                        token=token, cache_dir=cache_dir, force_download=force_download, verify=verify,
                        on_nonfinite=on_nonfinite, spec=spec, layout=check_name(format) if format is not None else None,
                        tp=tp)
    if section is None:
        return model
    stored = model.spec.quantization  # type: ignore[attr-defined]
    if stored is not None:  # a quantized checkpoint: as stored, when that is what was asked
        if with_quantization(model.spec, section).quantization == stored:  # type: ignore[attr-defined]
            return model
        raise UsageError(f"{name}: stored as {stored.describe()}; quantizing it again would quantize dequantized "
                         "weights (load its float checkpoint instead)")
    return quantize_model(model, section)


def convert(src: str | Path, dst: str | Path, to: str, *, dtype: str | None = None, shards: int = 1,
            max_shard_size: int | str = 5 * 2**30, overwrite: bool = False, **load_kw: Any) -> Path:
    """Any loadable checkpoint (a folder in a known format, a catalog name, a Hub repo) -> `to`:
    'hf' (transformers folder), 'meta' (consolidated.*.pth), 'mistral' (consolidated.safetensors)
    'zoo' (zoo's own folder) or 'gguf' (one llama.cpp file; `dtype` then names its tensor type: f32, f16,
    bf16, q8_0, q4_0). A distributed training checkpoint (DCP step folder) is read whole."""
    from .train.distributed import is_dcp, load_dcp_model  # the trainer is imported only for its folders

    gguf_type, dtype = (dtype, None) if to == "gguf" else (None, dtype)  # for gguf: f16, q8_0 … (the file's types)
    if is_dcp(src):
        model = load_dcp_model(src)
        if dtype is not None:
            model = model.to(parse_dtype(dtype))
    else:
        model = load(src, dtype=dtype, **load_kw)
    return export(model, dst, to, shards=shards, max_shard_size=max_shard_size, overwrite=overwrite, gguf_type=gguf_type)


def push(model: Any, repo_id: str, **kw: Any) -> str:
    """Publish a model (or a saved folder) to the Hugging Face Hub; returns the commit sha."""
    return hub.push(model, repo_id, **kw)
