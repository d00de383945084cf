"""Named hostile checkpoints, shared by the tests and bench/hostile.py: folder mutations
(zoo.yaml, config.json, params.json, special files), safetensors headers, shard indexes, and
known-bad and valid config.json edits. Editors re-fingerprint zoo.yaml where an attacker would."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, Callable

from .editors import (
    INDEX,
    edit_json,
    edit_zoo_yaml,
    first_tensor,
    largest_tensor,
    read_safetensors,
    write_safetensors,
)
from .spec_cases import alias_bomb, deep_flow

# ---------------------------------------------------------------------------------- folder mutations


def _zoo_yaml_text(folder: Path, text: str) -> None:
    (folder / "zoo.yaml").write_text(text)


CHECKPOINT_MUTATIONS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "a 2 KB zoo.yaml alias bomb": ("zoo", lambda f: _zoo_yaml_text(f, alias_bomb(9, 9) + (
        "schema_version: 1\nlayout: canonical\nfingerprint: sha256:0\nspec: {name: x, description: *a8}\n"))),
    "a zoo.yaml alias bomb in files": ("zoo", lambda f: _zoo_yaml_text(f, alias_bomb(9, 9) + (
        "schema_version: 1\nfiles: {model.safetensors: *a8}\nspec: {name: x}\n"))),
    "zoo.yaml with NUL bytes": ("zoo", lambda f: (f / "zoo.yaml").write_bytes(
        (f / "zoo.yaml").read_bytes().replace(b"schema_version", b"schema\x00version", 1))),
    "zoo.yaml 100000-deep": ("zoo", lambda f: _zoo_yaml_text(f, "spec: " + deep_flow(100000))),
    "zoo.yaml python tag": ("zoo", lambda f: _zoo_yaml_text(
        f, "spec: !!python/object/apply:os.system ['touch pwned']\n")),
    "zoo.yaml empty": ("zoo", lambda f: _zoo_yaml_text(f, "")),
    "zoo.yaml a list": ("zoo", lambda f: _zoo_yaml_text(f, "- 1\n")),
    "an empty fingerprint": ("zoo", lambda f: edit_zoo_yaml(f, lambda d: d.__setitem__("fingerprint", ""),
                                                            refingerprint=False)),
    "a null fingerprint": ("zoo", lambda f: edit_zoo_yaml(f, lambda d: d.__setitem__("fingerprint", None),
                                                          refingerprint=False)),
    "no fingerprint": ("zoo", lambda f: edit_zoo_yaml(f, lambda d: d.pop("fingerprint"), refingerprint=False)),
    "a wrong fingerprint": ("zoo", lambda f: edit_zoo_yaml(f, lambda d: d.__setitem__("fingerprint", "sha256:0"),
                                                           refingerprint=False)),
    "a spec edited by hand": ("zoo", lambda f: edit_zoo_yaml(f, lambda d: d["spec"].__setitem__("description", "x"),
                                                             refingerprint=False)),
    "n_layers true in zoo.yaml": ("zoo", lambda f: edit_zoo_yaml(f, lambda d: d["spec"]["arch"].__setitem__(
        "n_layers", True))),
    "eps .inf in zoo.yaml": ("zoo", lambda f: edit_zoo_yaml(f, lambda d: d["spec"]["arch"]["norm"].__setitem__(
        "eps", float("inf")))),
    "files: a list": ("zoo", lambda f: edit_zoo_yaml(f, lambda d: d.__setitem__("files", [1]))),
    "a manifest entry that is a number": ("zoo", lambda f: edit_zoo_yaml(
        f, lambda d: d["files"].__setitem__("model.safetensors", 5), remanifest=False)),
    "a manifest naming ../outside": ("zoo", lambda f: edit_zoo_yaml(
        f, lambda d: d["files"].__setitem__("../outside.bin", {"size": 1, "sha256": "0" * 64}), remanifest=False)),
    "a manifest naming /etc/passwd": ("zoo", lambda f: edit_zoo_yaml(
        f, lambda d: d["files"].__setitem__("/etc/passwd", {"size": 1, "sha256": "0" * 64}), remanifest=False)),
    "layout ../../etc/passwd": ("zoo", lambda f: edit_zoo_yaml(f, lambda d: d.__setitem__("layout",
                                                                                          "../../../../etc/passwd"))),
    "layout unknown": ("zoo", lambda f: edit_zoo_yaml(f, lambda d: d.__setitem__("layout", "hf-nope"))),
    "layout meta (pth storage)": ("zoo", lambda f: edit_zoo_yaml(f, lambda d: d.__setitem__("layout", "meta"))),
    "layout a number": ("zoo", lambda f: edit_zoo_yaml(f, lambda d: d.__setitem__("layout", 5))),
    "schema_version 2": ("zoo", lambda f: edit_zoo_yaml(f, lambda d: d.__setitem__("schema_version", 2))),
    "num_attention_heads 0": ("hf", lambda f: edit_json(f / "config.json",
                                                        lambda c: c.__setitem__("num_attention_heads", 0))),
    "string rope_parameters": ("hf", lambda f: edit_json(f / "config.json",
                                                         lambda c: c.__setitem__("rope_parameters", "default"))),
    "Mixtral sliding_window -5": ("mixtral", lambda f: edit_json(f / "config.json",
                                                                 lambda c: c.__setitem__("sliding_window", -5))),
    "Mixtral sliding_window 0": ("mixtral", lambda f: edit_json(f / "config.json",
                                                                lambda c: c.__setitem__("sliding_window", 0))),
    "an int shard name in the index": ("sharded", lambda f: edit_json(
        f / "model.safetensors.index.json", lambda i: i["weight_map"].__setitem__(sorted(i["weight_map"])[0], 3))),
    "an index naming ../x.safetensors": ("sharded", lambda f: edit_json(
        f / "model.safetensors.index.json",
        lambda i: i["weight_map"].__setitem__(sorted(i["weight_map"])[0], "../x.safetensors"))),
    "params.json n_heads 0": ("meta", lambda f: edit_json(f / "params.json", lambda p: p.__setitem__("n_heads", 0))),
    "params.json norm_eps NaN": ("meta", lambda f: edit_json(f / "params.json",
                                                             lambda p: p.__setitem__("norm_eps", float("nan")))),
    "params.json n_layers true": ("meta", lambda f: edit_json(f / "params.json",
                                                              lambda p: p.__setitem__("n_layers", True))),
    "params.json a list": ("meta", lambda f: (f / "params.json").write_text("[1]")),
    "a garbage .pth": ("meta", lambda f: (f / "consolidated.00.pth").write_bytes(b"PK\x03\x04garbage" * 10)),
    "a 300 MB sparse config.json": ("hf", lambda f: os.truncate(f / "config.json", 300 << 20)),
    "a 300 MB sparse zoo.yaml": ("zoo", lambda f: os.truncate(f / "zoo.yaml", 300 << 20)),
    "model.safetensors is a folder": ("hf", lambda f: ((f / "model.safetensors").unlink(),
                                                       (f / "model.safetensors").mkdir())),
    "model.safetensors is a FIFO": ("hf", lambda f: ((f / "model.safetensors").unlink(),
                                                     os.mkfifo(f / "model.safetensors"))),
    "model.safetensors is /dev/zero": ("hf", lambda f: ((f / "model.safetensors").unlink(),
                                                        (f / "model.safetensors").symlink_to("/dev/zero"))),
    "config.json is a FIFO": ("hf", lambda f: ((f / "config.json").unlink(), os.mkfifo(f / "config.json"))),
    "model.safetensors is a symlink loop": ("hf", lambda f: (
        (f / "model.safetensors").unlink(), (f / "model.safetensors").symlink_to("model.safetensors"))),
}


def _swap_dtype(folder: Path) -> None:
    h, d = read_safetensors(folder / "model.safetensors")
    h[largest_tensor(h)]["dtype"] = "I32"
    write_safetensors(folder / "model.safetensors", h, d)


CHECKPOINT_MUTATIONS["a safetensors header whose dtype was swapped (hf)"] = ("hf", _swap_dtype)

# ---------------------------------------------------------------------------------- safetensors headers


def _set(name_of: Callable[[dict], str], key: str, value: Any) -> Callable[[dict, bytes], None]:
    def fn(h: dict, d: bytes) -> None:
        h[name_of(h)][key] = value
    return fn


def _dtype_swap(new: str, factor: float) -> Callable[[dict, bytes], None]:
    """Relabel the largest tensor's bytes as `new` (shape's last dim scaled so the byte count
    still matches): the header stays self-consistent, the tensor is not what the model holds."""
    def fn(h: dict, d: bytes) -> None:
        e = h[largest_tensor(h)]
        e["dtype"] = new
        e["shape"] = e["shape"][:-1] + [int(e["shape"][-1] * factor)]
    return fn


def _overlap(h: dict, d: bytes) -> None:
    """A second tensor made to start where the first one does (same length as before)."""
    a = first_tensor(h)
    b = max((k for k in h if k not in ("__metadata__", a)),
            key=lambda k: h[k]["data_offsets"][1] - h[k]["data_offsets"][0])
    length = h[b]["data_offsets"][1] - h[b]["data_offsets"][0]
    h[b]["data_offsets"] = [h[a]["data_offsets"][0], h[a]["data_offsets"][0] + length]


def _drop(h: dict, d: bytes) -> None:
    del h[largest_tensor(h)]


def _extra(name: str) -> Callable[[dict, bytes], None]:
    def fn(h: dict, d: bytes) -> None:
        h[name] = dict(h[first_tensor(h)])
    return fn


def _nan(value: float, all_of_it: bool = False) -> Callable[[dict, bytes], dict]:
    def fn(h: dict, d: bytes) -> dict:
        e = h[largest_tensor(h)]
        assert e["dtype"] == "F32"
        b, end = e["data_offsets"]
        buf = bytearray(d)
        n = (end - b) // 4 if all_of_it else 1
        buf[b:b + 4 * n] = struct.pack("<f", value) * n
        return {"data": bytes(buf)}
    return fn


HEADER_BAD: dict[str, Callable[[dict, bytes], Any]] = {
    "header length past the end": lambda h, d: {"length": 10**9},
    "header length 2**64-1": lambda h, d: {"length": 2**64 - 1},
    "header length 0": lambda h, d: {"length": 0},
    "header length 1": lambda h, d: {"length": 1},
    "header not JSON": lambda h, d: {"header_bytes": b"{not json" + b" " * 40},
    "header a JSON list": lambda h, d: {"header_bytes": b"[1, 2, 3]"},
    "header a JSON string": lambda h, d: {"header_bytes": b'"tensors"'},
    "header null": lambda h, d: {"header_bytes": b"null"},
    "header invalid UTF-8": lambda h, d: {"header_bytes": b'{"\xff\xfe": 1}'},
    "header deeply nested": lambda h, d: {"header_bytes": b"[" * 200000 + b"]" * 200000},
    "header with NaN": lambda h, d: {"header_bytes": json.dumps(h).replace('"F32"', "NaN", 1).encode()},
    "unknown dtype F7": _set(largest_tensor, "dtype", "F7"),
    "dtype a number": _set(largest_tensor, "dtype", 32),
    "dtype swapped F32->I32": _dtype_swap("I32", 1),
    "dtype swapped F32->U8": _dtype_swap("U8", 4),
    "dtype swapped F32->BOOL": _dtype_swap("BOOL", 4),
    "dtype swapped F32->I64": _dtype_swap("I64", 0.5),
    "dtype swapped F32->F16 (shape doubled)": _dtype_swap("F16", 2),
    "dtype swapped F32->F64 (shape halved)": _dtype_swap("F64", 0.5),
    "dtype swapped F32->F8_E4M3 (shape x4)": _dtype_swap("F8_E4M3", 4),
    "negative dim": _set(largest_tensor, "shape", [-64, -64]),
    "shape a string": _set(largest_tensor, "shape", "64x64"),
    "shape of strings": _set(largest_tensor, "shape", ["a", "b"]),
    "shape of floats": _set(largest_tensor, "shape", [0.5, 8]),
    "shape too long": _set(largest_tensor, "shape", [1, 1, 1, 1, 1, 1, 1, 1, 1]),
    "huge dim": _set(largest_tensor, "shape", [2**62, 2**62]),
    "offsets reversed": lambda h, d: h[largest_tensor(h)].__setitem__("data_offsets",
                                                                      h[largest_tensor(h)]["data_offsets"][::-1]),
    "negative offsets": _set(largest_tensor, "data_offsets", [-8, 0]),
    "offsets past the end": _set(largest_tensor, "data_offsets", [10**9, 10**9 + 24576]),
    "offsets a string": _set(largest_tensor, "data_offsets", "0-10"),
    "three offsets": _set(largest_tensor, "data_offsets", [0, 1, 2]),
    "float offsets": _set(largest_tensor, "data_offsets", [0.0, 1.5]),
    "huge offsets": _set(largest_tensor, "data_offsets", [2**64, 2**65]),
    "overlapping tensors": _overlap,
    "a tensor missing": _drop,
    "an unexpected tensor": _extra("model.layers.99.mlp.gate_proj.weight"),
    "a tensor named ../../etc/passwd": _extra("../../etc/passwd"),
    "an entry that is not a mapping": lambda h, d: h.__setitem__(largest_tensor(h), [1, 2]),
    "an entry without dtype": lambda h, d: h[largest_tensor(h)].pop("dtype"),
    "an entry without offsets": lambda h, d: h[largest_tensor(h)].pop("data_offsets"),
    "20k unexpected tensors": lambda h, d: h.update({f"junk.{i}": {"dtype": "F32", "shape": [0],
                                                                    "data_offsets": [0, 0]} for i in range(20000)}),
    "NaN weights": _nan(float("nan")),
    "inf weights": _nan(float("inf")),
    "all-NaN tensor": _nan(float("nan"), all_of_it=True),
}
NAN_CASES = {"NaN weights", "inf weights", "all-NaN tensor"}

# ---------------------------------------------------------------------------------- shard indexes


def _index(fn: Callable[[dict], Any]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        edit_json(folder / INDEX, fn)
    return apply


def _first_shard_name(idx: dict) -> str:
    return sorted(set(idx["weight_map"].values()))[0]


def _point(target: Callable[[dict], str]) -> Callable[[dict], None]:
    def fn(idx: dict) -> None:
        first = _first_shard_name(idx)
        new = target(idx)
        idx["weight_map"] = {k: (new if v == first else v) for k, v in idx["weight_map"].items()}
    return fn


def _outside_copy(folder: Path) -> None:
    """A real shard copied next to the folder, and the index pointing at it through `..`."""
    idx = json.loads((folder / INDEX).read_text())
    first = _first_shard_name(idx)
    (folder.parent / "outside.safetensors").write_bytes((folder / first).read_bytes())
    idx["weight_map"] = {k: ("../outside.safetensors" if v == first else v) for k, v in idx["weight_map"].items()}
    (folder / INDEX).write_text(json.dumps(idx))


def _outside_absolute(folder: Path) -> None:
    idx = json.loads((folder / INDEX).read_text())
    first = _first_shard_name(idx)
    out = folder.parent / "abs.safetensors"
    out.write_bytes((folder / first).read_bytes())
    idx["weight_map"] = {k: (str(out) if v == first else v) for k, v in idx["weight_map"].items()}
    (folder / INDEX).write_text(json.dumps(idx))


INDEX_BAD: dict[str, Callable[[Path], None]] = {
    "an int shard name": _index(_point(lambda idx: 7)),
    "a null shard name": _index(_point(lambda idx: None)),
    "a list shard name": _index(_point(lambda idx: ["a"])),
    "a missing shard": _index(_point(lambda idx: "model-99999-of-99999.safetensors")),
    "a shard named ../x.safetensors": _index(_point(lambda idx: "../x.safetensors")),
    "a shard named /etc/passwd": _index(_point(lambda idx: "/etc/passwd")),
    "a shard that is the folder": _index(_point(lambda idx: ".")),
    "a shard that is the index": _index(_point(lambda idx: INDEX)),
    "an existing shard outside, through ..": _outside_copy,
    "an existing shard outside, absolute": _outside_absolute,
    "weight_map a list": _index(lambda idx: idx.__setitem__("weight_map", [1, 2])),
    "weight_map null": _index(lambda idx: idx.__setitem__("weight_map", None)),
    "weight_map empty": _index(lambda idx: idx.__setitem__("weight_map", {})),
    "no weight_map": _index(lambda idx: idx.pop("weight_map")),
    "index a list": lambda f: (f / INDEX).write_text("[1]"),
    "a tensor mapped to the wrong shard": _index(lambda idx: idx["weight_map"].__setitem__(
        sorted(idx["weight_map"])[-1], _first_shard_name(idx))),
    "an unknown tensor in the index": _index(lambda idx: idx["weight_map"].__setitem__("x.weight",
                                                                                       _first_shard_name(idx))),
    "index not JSON": lambda f: (f / INDEX).write_text("{weight_map: nope"),
    "index deeply nested": lambda f: (f / INDEX).write_text("[" * 100000 + "]" * 100000),
}

# ---------------------------------------------------------------------------------- transformers config.json

#: known-bad (key, value) edits of a Llama config.json (values as Python/JSON data)
HF_BAD: list[tuple[str, Any]] = [
    ("num_attention_heads", 0), ("num_attention_heads", -4), ("num_attention_heads", True), ("num_attention_heads", 3),
    ("num_attention_heads", "four"), ("num_attention_heads", None), ("num_attention_heads", 1.5),
    ("num_attention_heads", [4]), ("num_key_value_heads", 3), ("num_key_value_heads", -1), ("num_key_value_heads", 8),
    ("hidden_size", 0), ("hidden_size", -64), ("hidden_size", 63), ("hidden_size", True), ("hidden_size", "64x"),
    ("hidden_size", 10**12), ("intermediate_size", 0), ("intermediate_size", -1), ("intermediate_size", 10**12),
    ("intermediate_size", "big"), ("num_hidden_layers", 0), ("num_hidden_layers", -2), ("num_hidden_layers", True),
    ("num_hidden_layers", 10**9), ("vocab_size", 0), ("vocab_size", -1), ("vocab_size", 10**12), ("vocab_size", "x"),
    ("head_dim", 0), ("head_dim", -16), ("head_dim", 7), ("head_dim", True),
    ("rms_norm_eps", -1.0), ("rms_norm_eps", float("nan")), ("rms_norm_eps", float("inf")), ("rms_norm_eps", "x"),
    ("rms_norm_eps", 0.0), ("max_position_embeddings", 0), ("max_position_embeddings", -1),
    ("max_position_embeddings", True), ("rope_parameters", "default"), ("rope_parameters", 5),
    ("rope_parameters", [1, 2]), ("rope_parameters", {"rope_type": "bogus", "rope_theta": 10000.0}),
    ("rope_parameters", {"rope_type": "default", "rope_theta": -1.0}),
    ("rope_parameters", {"rope_type": "default", "rope_theta": float("nan")}),
    ("rope_parameters", {"rope_type": "default", "rope_theta": float("inf")}),
    ("rope_parameters", {"rope_type": "default", "rope_theta": "big"}), ("rope_theta", -5.0),
    ("rope_theta", float("nan")), ("rope_scaling", "linear"), ("rope_scaling", {"rope_type": "linear", "factor": -2.0}),
    ("rope_scaling", {"rope_type": "linear", "factor": 0}), ("hidden_act", "bogus"), ("hidden_act", 5),
    ("hidden_act", None), ("tie_word_embeddings", "maybe"), ("tie_word_embeddings", 7),
    ("attention_bias", "yes please"), ("mlp_bias", 3), ("model_type", None), ("model_type", "gpt9"),
    ("model_type", 5),
]
#: known-bad edits of a Mixtral config.json
MIXTRAL_BAD: list[tuple[str, Any]] = [
    ("sliding_window", -5), ("sliding_window", 0), ("sliding_window", "x"), ("sliding_window", True),
    ("sliding_window", 1.5), ("num_local_experts", 0), ("num_local_experts", -1), ("num_local_experts", True),
    ("num_experts_per_tok", 0), ("num_experts_per_tok", 99), ("num_experts_per_tok", -2),
    ("router_aux_loss_coef", float("nan")), ("router_aux_loss_coef", "x"),
]
#: edits that leave a Llama config.json valid (and the weights loadable)
HF_GOOD: list[tuple[str, Any]] = [
    ("rms_norm_eps", 1e-6), ("rms_norm_eps", 1e-5), ("rope_theta", 500000.0), ("max_position_embeddings", 8192),
    ("max_position_embeddings", 64), ("bos_token_id", 0), ("eos_token_id", [2, 3]), ("pad_token_id", None),
    ("torch_dtype", "float32"), ("dtype", "bfloat16"), ("use_cache", False), ("attention_dropout", 0.0),
    ("transformers_version", "5.0.0"), ("architectures", ["LlamaForCausalLM"]), ("initializer_range", 0.01),
]
#: keys a Llama config.json cannot do without
HF_REQUIRED = ["num_attention_heads", "hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size",
               "model_type"]
