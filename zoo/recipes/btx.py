"""Branch-Train-MiX (Sukhbaatar et al. 2024) and its two special cases, on zoo checkpoints.

    paths = branch("runs/seed/step-001000", 3, "experts")     # expert-0..2: copies of the seed
    # train each copy on its own domain, as independent jobs: zoo/recipes/btx_train.py (`zoo btx train-all`)
    moe = mix(["runs/code", "runs/c", "runs/prose"], top_k=2)  # BTX: FFNs -> experts, rest averaged
    moe.save("btx")                                            # then MoE-finetune: `zoo train btx ...`
    dense = mix([...], mode="btm")                             # Branch-Train-Merge: average everything
    up = mix(["runs/seed"], mode="upcycle", n_experts=4)       # sparse upcycling: no branching

Merging works on the runtime's canonical parameter names: a dense FFN's `X.ffn.{gate,up,down}.weight`
of expert model i becomes slice i of the MoE's stacked `X.ffn.experts.{gate,up,down}`; every other
parameter (attention, norms, embeddings, output) is the (weighted) mean over the models; the router
`X.ffn.router.weight` is new (see `init_router`). The mixed model's spec is the seed's with every
ffn (and every per-layer ffn override) turned into `{kind: moe, n_experts, top_k, expert: <that
ffn>, router: {aux_loss_coef}}`, so the result is an ordinary zoo model: it saves, loads, trains
(`CausalLM.loss` adds the load-balancing loss) and exports to transformers' Mixtral layout.

Merging refuses models that do not share the seed's architecture, naming the first key of the
resolved spec (or the parameter) that differs: `MergeError`.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..api import build, load
from ..checkpoint import (
    SPEC_FILE,
    CheckpointError,
    atomic_folder,
    manifest,
    read_document,
    verify_files,
    write_spec,
)
from ..compiler.errors import ZooError
from ..compiler.schema import ModelSpec
from ..model import parse_dtype
from ..train import checkpoints

MODES = ("btx", "btm", "upcycle")
ROUTER_INITS = ("normal", "zero")
#: spec keys that describe provenance, not architecture: experts may differ in them
PROVENANCE_KEYS = ("name", "description", "weights", "published", "license", "family")
_EXPERTS = re.compile(r"^(?P<ffn>.+\.ffn)\.experts\.(?P<proj>gate|up|down)$")
_ROUTER = re.compile(r"^.+\.ffn\.router\.weight$")


class MergeError(ZooError, ValueError):
    """Models cannot be merged: different architectures or parameters, or a bad merge request.
    `key` is the first differing spec key or parameter name (None for bad requests), and
    `differences` every (key, this model's value, the first model's value) found."""

    def __init__(self, message: str, key: str | None = None,
                 differences: Sequence[tuple[str, Any, Any]] = ()) -> None:
        super().__init__(message)
        self.key = key
        self.differences = list(differences)


# ------------------------------------------------------------------------------ branch
def _is_zoo_folder(p: Path) -> bool:
    return (p / SPEC_FILE).is_file()


def resolve_folder(source: str | Path) -> Path | None:
    """A local zoo checkpoint for `source`: the folder itself, or the newest step-* checkpoint of
    a training run folder; None when `source` is not a local zoo checkpoint (a transformers or
    Meta folder, a catalog name, a Hub repo: those go through zoo.load)."""
    p = Path(source).expanduser()
    if not p.is_dir():
        return None
    if _is_zoo_folder(p):
        return p

    steps = checkpoints(p)
    return steps[-1] if steps else None


def _model_files(folder: Path) -> list[Path]:
    """The files that make `folder` a model checkpoint: everything but trainer state (optimizer,
    RNG: a branch starts its own run) and hidden temporary folders."""
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if p.is_file() and rel.parts[0] != "trainer" and not any(s.startswith(".") for s in rel.parts):
            out.append(p)
    return out


def branch(seed: str | Path, n: int, out: str | Path, *, prefix: str = "expert", overwrite: bool = False,
           progress: bool | None = None, revision: str | None = None, token: str | bool | None = None) -> list[Path]:
    """N identical copies of a seed checkpoint as `out/expert-0` … `out/expert-{n-1}`.

    `seed`: a zoo checkpoint folder, a training run (its newest step), or anything zoo.load
    reads (catalog name, Hub repo, transformers or Meta folder: loaded once and saved as
    expert-0, which the other copies are taken from). Trainer state is not copied. Each copy is
    written atomically (a hidden folder renamed into place); a progress bar counts bytes."""
    if n < 1:
        raise MergeError(f"branch: need at least one copy, got n={n}")
    out = Path(out)
    targets = [out / f"{prefix}-{i}" for i in range(n)]
    taken = [t for t in targets if t.exists()]
    if taken and not overwrite:
        raise CheckpointError(f"{taken[0]} exists; pass overwrite=True (--overwrite) to replace it")
    src = resolve_folder(seed)
    start = 0
    if src is None:
        model = load(seed, revision=revision, token=token)
        model.save(targets[0], progress=progress)
        src, start = targets[0], 1
    doc = read_document(src)
    if doc.files:
        verify_files(src, doc.files, checksums=False)  # sizes: never copy a damaged seed N times
    files = [p for p in _model_files(src) if p.name != SPEC_FILE or p.parent != src]
    _copy_all(src, files, targets[start:], overwrite, progress, doc)
    return targets


def _copy_all(src: Path, files: list[Path], targets: list[Path], overwrite: bool, progress: bool | None,
              doc: Any) -> None:
    """Copy `files` into each target, with a zoo.yaml listing exactly what was copied."""
    from tqdm.auto import tqdm

    total = sum(p.stat().st_size for p in files) * len(targets)
    with tqdm(total=total, unit="B", unit_scale=True, desc="branch", leave=False,
              disable=None if progress is None else not progress) as bar:
        for target in targets:
            with atomic_folder(target, overwrite) as tmp:
                for p in files:
                    dest = tmp / p.relative_to(src)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with open(p, "rb") as fin, open(dest, "wb") as fout:
                        while block := fin.read(16 << 20):
                            fout.write(block)
                            bar.update(len(block))
                    shutil.copystat(p, dest)
                write_spec(tmp, doc.spec, doc.layout, manifest(tmp))


# ------------------------------------------------------------------------------ specs
def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: data}


def spec_differences(a: ModelSpec, b: ModelSpec) -> list[tuple[str, Any, Any]]:
    """(dotted key, a's value, b's value) for every key of the resolved specs that differs,
    provenance (name, description, weights pin, …) aside."""
    da = _flatten({k: v for k, v in a.model_dump(mode="json").items() if k not in PROVENANCE_KEYS})
    db = _flatten({k: v for k, v in b.model_dump(mode="json").items() if k not in PROVENANCE_KEYS})
    missing = object()
    out = []
    for key in sorted(set(da) | set(db)):
        va, vb = da.get(key, missing), db.get(key, missing)
        if va != vb:
            out.append((key, None if va is missing else va, None if vb is missing else vb))
    return out


def check_compatible(models: Sequence[nn.Module], labels: Sequence[str] | None = None) -> None:
    """Every model has the first one's architecture (resolved spec, provenance aside) and
    parameters (names and shapes); MergeError naming the first key that differs otherwise."""
    labels = list(labels or [f"model {i}" for i in range(len(models))])
    first = models[0]
    ref_shapes = {k: tuple(v.shape) for k, v in first.state_dict().items()}
    for model, label in zip(models[1:], labels[1:]):
        diffs = spec_differences(model.spec, first.spec)  # type: ignore[arg-type]
        if diffs:
            key, mine, theirs = diffs[0]
            more = f" (and {len(diffs) - 1} more: {', '.join(d[0] for d in diffs[1:4])}" \
                   f"{', …' if len(diffs) > 4 else ''})" if len(diffs) > 1 else ""
            raise MergeError(f"{label} does not share the architecture of {labels[0]}: {key} is {mine!r} there, "
                             f"{theirs!r} in {labels[0]}{more}", key, diffs)
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        diffs = [(k, shapes.get(k), ref_shapes.get(k)) for k in sorted(set(shapes) | set(ref_shapes))
                 if shapes.get(k) != ref_shapes.get(k)]
        if diffs:
            key, mine, theirs = diffs[0]
            raise MergeError(f"{label} does not have the parameters of {labels[0]}: parameter {key} has shape "
                             f"{mine} there, {theirs} in {labels[0]} (None: absent)", key, diffs)


def _as_moe(ffn: dict[str, Any], where: str, n_experts: int, top_k: int, aux_loss_coef: float) -> dict[str, Any]:
    if ffn.get("kind") == "moe":
        raise MergeError(f"{where}: the seed's ffn is already a mixture of experts; BTX and upcycling turn dense "
                         f"FFNs into experts", where)
    if ffn.get("bias"):
        raise MergeError(f"{where}: the seed's ffn has biases; MoE experts are stored stacked without biases", where)
    return {"kind": "moe", "n_experts": n_experts, "top_k": top_k, "expert": ffn,
            "router": {"aux_loss_coef": aux_loss_coef, "normalize_top_k": True}}


def moe_spec(seed: ModelSpec, n_experts: int, top_k: int = 2, aux_loss_coef: float = 0.01, *,
             name: str | None = None, description: str | None = None) -> ModelSpec:
    """The seed's spec with every dense ffn (and per-layer ffn override) a mixture of
    `n_experts` copies of it, `top_k` per token; weights pin and published facts dropped."""
    from pydantic import ValidationError

    if seed.arch is not seed.arch.language_model():
        raise MergeError(f"{seed.name}: only decoder models can be mixed (this is a {seed.arch.kind_name})",
                         "arch.kind")
    if not 1 <= top_k <= n_experts:
        raise MergeError(f"top_k ({top_k}) must be between 1 and the number of experts ({n_experts})")
    raw = seed.model_dump(mode="json")
    arch = raw["arch"]
    arch["ffn"] = _as_moe(arch["ffn"], "arch.ffn", n_experts, top_k, aux_loss_coef)
    for key, override in arch.get("layers", {}).items():
        if override.get("ffn") is not None:
            override["ffn"] = _as_moe(override["ffn"], f"arch.layers.{key}.ffn", n_experts, top_k, aux_loss_coef)
    raw.update(name=name or f"{seed.name}-moe{n_experts}", weights=None, published=None,
               description=description if description is not None else seed.description)
    try:
        return ModelSpec.model_validate(raw)
    except ValidationError as e:
        raise MergeError(f"the mixed spec does not validate: {e}") from None


def _renamed(seed: ModelSpec, name: str, description: str) -> ModelSpec:
    return seed.model_copy(update={"name": name, "description": description, "weights": None, "published": None})


# ------------------------------------------------------------------------------ mixing
def _load_sources(sources: Sequence[str | Path | nn.Module], backend: str | None) -> tuple[list[nn.Module], list[str]]:
    models, labels = [], []
    for i, s in enumerate(sources):
        if isinstance(s, nn.Module):
            models.append(s)
            labels.append(f"model {i}")
            continue
        folder = resolve_folder(s)
        models.append(load(folder if folder is not None else s, backend=backend))
        labels.append(str(folder if folder is not None else s))
    return models, labels


def _weights(weights: Sequence[float] | None, n: int) -> torch.Tensor:
    if weights is None:
        return torch.full((n,), 1.0 / n, dtype=torch.float64)
    w = torch.tensor([float(x) for x in weights], dtype=torch.float64)
    if len(w) != n:
        raise MergeError(f"{len(w)} averaging weights for {n} models")
    if (w < 0).any() or float(w.sum()) <= 0:
        raise MergeError(f"averaging weights must be >= 0 with a positive sum, got {list(weights)}")
    return w / w.sum()


def average(tensors: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """sum_i w_i t_i, accumulated in float64 (so the mean of identical tensors is that tensor,
    bit for bit, once cast back)."""
    acc = torch.zeros(tensors[0].shape, dtype=torch.float64)
    for w, t in zip(weights.tolist(), tensors):
        acc.add_(t.detach().to("cpu", torch.float64), alpha=w)
    return acc


@torch.no_grad()
def init_router(weight: torch.Tensor, how: str = "normal", std: float = 0.02,
                generator: torch.Generator | None = None) -> None:
    """A new router [experts, dim]. "normal" (default): N(0, std²), the zoo's (and transformers')
    init for a fresh linear map: logits start near zero, so routing is close to uniform but
    token-dependent and every expert gets tokens (and gradient) from the first step. "zero":
    exactly uniform probabilities, but top-k then breaks ties by index, so every token starts on
    experts 0..k-1 and only the load-balancing loss moves the others. The paper trains a new
    router in the MoE finetune; it gives no special initialization."""
    if how == "zero":
        weight.zero_()
    elif how == "normal":
        weight.normal_(0.0, std, generator=generator)
    else:
        raise MergeError(f"router init {how!r}: use one of {', '.join(ROUTER_INITS)}")


def _empty_model(spec: ModelSpec, backend: str | None, tokenizer: Any) -> nn.Module:
    model = build(spec, backend=backend, init="meta", tokenizer=tokenizer)
    model.to_empty(device="cpu")
    return model


@torch.no_grad()
def mix(sources: Sequence[str | Path | nn.Module], *, mode: str = "btx", top_k: int = 2,
        n_experts: int | None = None, weights: Sequence[float] | None = None, aux_loss_coef: float = 0.01,
        router_init: str = "normal", router_std: float = 0.02, seed: int = 0, name: str | None = None,
        dtype: torch.dtype | str | None = None, backend: str | None = None,
        progress: bool | None = None) -> nn.Module:
    """Merge trained branches of one seed into one zoo model (not saved: call `.save`).

    mode="btx": each source's FFNs become expert i of an MoE layer (expert i = source i), every
    other parameter is averaged (`weights`, default uniform), the router is new (`init_router`).
    mode="btm": no MoE; every parameter averaged (Branch-Train-Merge's parameter average).
    mode="upcycle": one source; an MoE whose `n_experts` experts are copies of its FFN.
    Sources: checkpoint folders, training runs (newest step), zoo.load names, or zoo models."""
    from tqdm.auto import tqdm

    if mode not in MODES:
        raise MergeError(f"mode {mode!r}: use one of {', '.join(MODES)}")
    if not sources:
        raise MergeError("nothing to mix: give at least one model")
    if mode == "upcycle":
        if len(sources) != 1:
            raise MergeError(f"upcycling builds experts from ONE dense model; got {len(sources)} (use mode='btx' to "
                             f"mix branches)")
        if n_experts is None or n_experts < 1:
            raise MergeError("upcycling needs n_experts (how many copies of the FFN)")
    elif n_experts is not None and n_experts != len(sources):
        raise MergeError(f"mode {mode!r} makes one expert per model: n_experts={n_experts} but {len(sources)} models")
    models, labels = _load_sources(sources, backend)
    check_compatible(models, labels)
    seed_spec: ModelSpec = models[0].spec  # type: ignore[assignment]
    n = len(models)
    w = _weights(weights, n)
    e = n_experts if mode == "upcycle" else n
    if mode == "btm":
        spec = _renamed(seed_spec, name or f"{seed_spec.name}-btm{n}",
                        f"Branch-Train-Merge: parameter average of {n} branches of {seed_spec.name}")
    else:
        assert e is not None
        if mode == "btx" and n < 2:
            raise MergeError("BTX mixes at least two branches (one model: use mode='upcycle')")
        what = (f"Branch-Train-MiX of {n} branches of {seed_spec.name}" if mode == "btx"
                else f"sparse upcycling of {seed_spec.name} to {e} experts")
        spec = moe_spec(seed_spec, e, top_k, aux_loss_coef, name=name or f"{seed_spec.name}-{mode}{e}",
                        description=f"{what}, top-{top_k}")
    if backend is None:  # the sources' backend (theirs was picked for this machine already)
        backend = getattr(getattr(getattr(models[0], "compiled", None), "backend", None), "name", None)
    out = _empty_model(spec, backend, getattr(models[0], "tokenizer", None))
    states = [m.state_dict() for m in models]
    gen = torch.Generator().manual_seed(seed)
    params = list(out.named_parameters())
    for pname, p in tqdm(params, desc=f"mixing ({mode})", unit="tensor", leave=False,
                         disable=None if progress is None else not progress):
        if (m := _EXPERTS.match(pname)) is not None:
            src = f"{m['ffn']}.{m['proj']}.weight"
            for i in range(p.shape[0]):
                p[i].copy_(states[i if mode == "btx" else 0][src])
        elif _ROUTER.match(pname):
            init_router(p, router_init, router_std, gen)
        elif pname in states[0]:
            p.copy_(average([s[pname] for s in states], w))
        else:  # cannot happen for decoder specs; a new module kind would land here
            raise MergeError(f"{pname}: the mixed model has a parameter no rule fills", pname)
    target = _dtype(dtype) or next(models[0].parameters()).dtype
    return out.to(target) if target != torch.float32 else out


def _dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    return parse_dtype(dtype)


# ------------------------------------------------------------------------------ ensembles
class Ensemble(nn.Module):
    """BTM's other inference mode: the members' next-token distributions mixed with fixed
    weights, p(y) = sum_i w_i p_i(y). `forward` returns log p (so cross-entropy on it is the
    ensemble's loss and argmax/sampling work as on logits). Costs every member's forward."""

    def __init__(self, members: Iterable[nn.Module], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.register_buffer("log_weights", _weights(weights, len(self.members)).float().log(), persistent=False)

    def forward(self, tokens: torch.Tensor, **kw: Any) -> torch.Tensor:
        logp = torch.stack([F.log_softmax(m(tokens, **kw).float(), dim=-1) for m in self.members])
        return torch.logsumexp(logp + self.log_weights.view(-1, *([1] * (logp.dim() - 1))), dim=0)

    def loss(self, tokens: torch.Tensor) -> torch.Tensor:
        logp = self(tokens)
        return F.nll_loss(logp[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
