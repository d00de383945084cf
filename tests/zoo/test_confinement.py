"""Nothing a checkpoint names is read from outside its folder: tokenizer files, manifest
entries, shard indexes and symlinks are checked before anything is opened; a zoo.yaml is read
with a spec file's limits and must carry its fingerprint."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

import zoo
from zoo.checkpoint import CheckpointError
from zoo.compiler.errors import SpecError
from zoo.compiler.fingerprint import fingerprint_of

TINY = ["arch.dim=64", "arch.n_layers=2", "arch.attention.n_heads=4", "arch.ffn.hidden_dim=96", "arch.vocab_size=128"]


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return zoo.build("llama-2-7b", TINY).save(tmp_path / "ckpt")


def _edit_spec(folder: Path, **tokenizer: object) -> None:
    """Rewrite zoo.yaml's tokenizer section, with a fingerprint that matches (a crafted file)."""
    doc = yaml.safe_load((folder / "zoo.yaml").read_text())
    doc["spec"]["tokenizer"] = {**doc["spec"]["tokenizer"], **tokenizer}
    doc["fingerprint"] = fingerprint_of(doc["spec"])
    (folder / "zoo.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.mark.parametrize("name", ["/etc/passwd", "../secret.model", "a/../../secret.model"])
def test_a_tokenizer_file_outside_the_folder_is_refused(saved: Path, name: str) -> None:
    (saved.parent / "secret.model").write_text("private")
    _edit_spec(saved, file=name)
    with pytest.raises(SpecError, match=r"tokenizer.file: .*(absolute path|climbs out)"):
        zoo.load(saved)


def test_a_tokenizer_symlink_out_is_refused(saved: Path) -> None:
    (saved.parent / "secret.model").write_text("private")
    (saved / "tokenizer.model").symlink_to(saved.parent / "secret.model")
    with pytest.raises(CheckpointError, match="may not .*tokenizer.model ->"):
        zoo.load(saved)


def test_a_manifest_entry_outside_the_folder_is_refused(saved: Path) -> None:
    doc = yaml.safe_load((saved / "zoo.yaml").read_text())
    doc["files"]["../../etc/hostname"] = {"size": 1, "sha256": "0" * 64}
    (saved / "zoo.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(CheckpointError, match=r"files: '\.\./\.\./etc/hostname' climbs out"):
        zoo.load(saved)


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/tmp/x.safetensors", 7])
def test_a_shard_index_naming_files_outside_is_refused(tmp_path: Path, shard: object) -> None:
    m = zoo.build("llama-2-7b", TINY)
    folder = m.save(tmp_path / "ckpt", max_shard_size="40KB")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = shard
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="a shard name .*(climbs out|absolute path|not a file name)"):
        zoo.load(folder, verify=False)


def test_a_weights_symlink_out_is_refused(saved: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.safetensors"
    (saved / "model.safetensors").rename(target)
    (saved / "model.safetensors").symlink_to(target)
    with pytest.raises(CheckpointError, match="may not .*model.safetensors ->"):
        zoo.load(saved, verify=False)


@pytest.mark.parametrize("value", ["", None])
def test_a_blank_fingerprint_is_an_error(saved: Path, value: object) -> None:
    doc = yaml.safe_load((saved / "zoo.yaml").read_text())
    doc["fingerprint"] = value
    (saved / "zoo.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(CheckpointError, match="no fingerprint"):
        zoo.load(saved)


def test_an_alias_bomb_in_zoo_yaml_is_refused_quickly(saved: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    (saved / "zoo.yaml").write_text(bomb + "spec: *i\n")
    t = time.perf_counter()
    with pytest.raises(CheckpointError, match="expands to more than 10,000 values"):
        zoo.load(saved)
    assert time.perf_counter() - t < 2
