"""Valid things the hostile cases start from: tiny models, spec texts, checkpoint folders in each
format zoo reads, and the library paths a spec takes (text, file, catalog name, meta build).

Importing this module warms zoo (see `warm`), once, in the parent: every forked case inherits it.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

import zoo

#: a tiny llama-2-7b (random weights, builds in milliseconds)
TINY = ["arch.dim=64", "arch.n_layers=2", "arch.attention.n_heads=4", "arch.ffn.hidden_dim=96", "arch.vocab_size=128"]
#: a tiny mixtral-8x7b
MIXTRAL_TINY = ["arch.dim=64", "arch.n_layers=2", "arch.attention.n_heads=4", "arch.attention.n_kv_heads=2",
                "arch.vocab_size=128", "arch.ffn.expert.hidden_dim=32", "arch.ffn.n_experts=4"]

#: the same model written out completely, without `extends` (vocab 128, context 256)
BASE_SPEC: dict[str, Any] = {
    "name": "fuzz-tiny",
    "family": "fuzz",
    "arch": {
        "kind": "decoder", "dim": 64, "n_layers": 2, "vocab_size": 128, "max_seq_len": 256,
        "attention": {"kind": "attention", "n_heads": 4, "rope": {"kind": "rope", "theta": 10000.0}},
        "ffn": {"kind": "swiglu", "hidden_dim": 96},
        "norm": {"kind": "rmsnorm", "eps": 1.0e-5},
    },
    "tokenizer": {"kind": "sentencepiece", "file": "tokenizer.model", "bos_id": 1, "eos_id": 2},
}

#: `extends` a catalog model, made tiny
EXTENDS_SPEC = ("name: fuzz-ext\nextends: llama/llama-2-7b\n"
                "arch: {dim: 64, n_layers: 2, attention: {n_heads: 4}, ffn: {hidden_dim: 96}, vocab_size: 128}\n")

#: every checkpoint format `checkpoint_folders` writes
FORMATS = ("zoo", "hf", "sharded", "mixtral", "meta", "tiny-code")

# ---------------------------------------------------------------------------------- specs


def base_spec() -> dict[str, Any]:
    return copy.deepcopy(BASE_SPEC)


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def set_path(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    node = data
    *parents, last = dotted.split(".")
    for k in parents:
        nxt = node.get(k)
        if not isinstance(nxt, dict):
            nxt = node[k] = {}
        node = nxt
    node[last] = value
    return data


def spec_with(dotted: str, yaml_value: str, base: dict[str, Any] | None = None) -> str:
    """BASE_SPEC's YAML text with `dotted` set to the YAML snippet `yaml_value`, spliced in as
    text so that YAML-only values (.inf, .nan, true, anchors) keep their meaning."""
    data = base_spec() if base is None else copy.deepcopy(base)
    set_path(data, dotted, "@@VALUE@@")
    text = dump_yaml(data)
    return text.replace("'@@VALUE@@'", yaml_value).replace("@@VALUE@@", yaml_value)


def one_line(value: str) -> str:
    return " ".join(value.split())


def override_items(dotted: str, yaml_value: str) -> list[str]:
    """The overrides that set `dotted` to `yaml_value` on a TINY catalog model. An override
    mapping merges into the catalog's ffn (hidden_dim=96 from TINY): for `arch.ffn` the explicit
    size is dropped so that the LLaMA sizing rule, the value under test, applies."""
    item = f"{dotted}={one_line(yaml_value)}"
    return ["arch.ffn.hidden_dim=null", item] if dotted == "arch.ffn" else [item]


def compile_text(text: str) -> str:
    """The library path a spec text takes: spec_from_text (catalog `extends` allowed), then
    zoo.compile (IR, checks, accounting). Returns the spec's name and size."""
    from zoo.compiler.frontend import SpecResolver, spec_from_text

    from zoo.catalog import specs_root

    spec = spec_from_text(text, resolver=SpecResolver([specs_root()]))
    c = zoo.compile(spec)
    return f"{spec.name}: {c.accounting.params} params"


def compile_file(path: str | Path) -> str:
    c = zoo.compile(str(path))
    return f"{c.spec.name}: {c.accounting.params} params"


def compile_catalog(name: str, overrides: list[str] | tuple[str, ...] = ()) -> str:
    c = zoo.compile(name, list(overrides))
    return f"{c.spec.name}: {c.accounting.params} params"


def build_meta_text(text: str) -> str:
    """A spec text built on the meta device (no weights): the builder's own checks."""
    from zoo.compiler.frontend import SpecResolver, spec_from_text

    from zoo.catalog import specs_root

    spec = spec_from_text(text, resolver=SpecResolver([specs_root()]))
    m = zoo.build(spec, init="meta")
    return f"{type(m).__name__} {sum(p.numel() for p in m.parameters())}"


# ---------------------------------------------------------------------------------- models


def tiny_model(seed: int = 0) -> Any:
    return zoo.build("llama-2-7b", TINY, seed=seed).eval()


def tiny_mixtral(seed: int = 0) -> Any:
    return zoo.build("mixtral-8x7b", MIXTRAL_TINY, seed=seed)


def nan_model(seed: int = 12) -> Any:
    """A tiny model whose first weights are NaN, inf and -inf."""
    m = tiny_model(seed=seed)
    with torch.no_grad():
        next(iter(m.parameters())).view(-1)[:3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    return m


def tiny_code() -> Any:
    """The shipped tiny-code model, warmed: forked cases start from here."""
    m = zoo.load("tiny-code").eval()
    m.generate_text("def f(", max_new_tokens=2)
    return m


def tiny_vlm(root: Path) -> Any:
    """A tiny random Pixtral with a Tekken tokenizer written under `root`, warmed."""
    from zoo.runtime.tokenizers import TekkenTokenizer

    from tests.runtime.test_pixtral_parity import tiny
    from tests.tekken_files import trained_ranks, write_tekken

    m = tiny("sdpa", f"arch.text.vocab_size={1000 + 256 + 200}", "arch.text.max_seq_len=1024")
    m.tokenizer = TekkenTokenizer.from_file(write_tekken(root / "tekken.json", trained_ranks(200)))
    m.generate_text("hi", images=[np.zeros((8, 8, 3), np.uint8)], max_new_tokens=1)
    return m


def digest(model: Any) -> str:
    """A hash of every tensor of a model (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    for k, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def load_digest(folder: str | Path) -> str:
    return digest(zoo.load(str(folder)))


# ---------------------------------------------------------------------------------- checkpoint folders


def copy_folder(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def hf_folder(model: Any, dst: Path, **save_kw: Any) -> Path:
    """A plain transformers folder: what zoo saves, without zoo.yaml and the card."""
    model.save(dst, **save_kw)
    for name in ("zoo.yaml", "README.md"):
        (dst / name).unlink()
    assert (dst / "config.json").is_file()
    return dst


def checkpoint_folders(model: Any, root: Path, kinds: tuple[str, ...] = FORMATS) -> dict[str, Path]:
    """`model` saved under `root` in each of `kinds`: zoo (zoo.yaml and safetensors), hf (a
    transformers folder), sharded (one in several shards and an index), meta (consolidated .pth
    and params.json); plus a tiny Mixtral transformers folder and a copy of the shipped tiny-code."""
    out = {"zoo": model.save(root / "zoo")}
    if "hf" in kinds:
        out["hf"] = hf_folder(model, root / "hf")
    if "sharded" in kinds:
        out["sharded"] = hf_folder(model, root / "sharded", max_shard_size=60000)
    if "mixtral" in kinds:
        out["mixtral"] = hf_folder(tiny_mixtral(), root / "mixtral")
    if "meta" in kinds:
        out["meta"] = zoo.convert(str(out["zoo"]), root / "meta", to="meta")
    if "tiny-code" in kinds:
        out["tiny-code"] = copy_folder(Path(zoo.__file__).parent / "models" / "tiny-code", root / "tiny-code")
    return out


def warm() -> None:
    """Import and cache what most cases use, in the parent, so that forked cases start warm."""
    with contextlib.suppress(Exception):
        from zoo.compiler.frontend import SpecResolver, spec_from_text  # noqa: F401

        import zoo.cli  # noqa: F401
        from zoo.catalog import resolver, specs_root  # noqa: F401

        resolver().index()
        compile_text(dump_yaml(base_spec()))
        compile_text(EXTENDS_SPEC)


warm()
