"""A saved model's card tells the truth: a model built with overrides carries its own name and
its changes, not the catalog model's; `base_model` names a Hub repo only when the weights were
read from it, and that survives a save and reload (zoo.yaml records it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import zoo
from tests.hub_server import HubServer, hub_env
from tests.zoo.weights_fixtures import TINY, hf_llama
from zoo.checkpoint import read_document

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")
SMALL = ["arch.dim=64", "arch.n_layers=1", "arch.attention.n_heads=4", "arch.ffn.hidden_dim=96",
         "arch.vocab_size=128"]


def _card(folder: Path) -> tuple[dict, str]:
    text = (folder / "README.md").read_text()
    _, front, body = text.split("---", 2)
    return yaml.safe_load(front), body


def test_a_built_model_with_overrides_is_not_presented_as_the_catalog_model(tmp_path: Path) -> None:
    folder = zoo.build("llama-2-7b", SMALL).save(tmp_path / "my-small-llama")
    meta, body = _card(folder)
    assert "base_model" not in meta  # random weights: nothing of meta-llama's in them
    assert body.lstrip().startswith("# my-small-llama\n")
    assert "Built from zoo's `llama-2-7b` spec" in body and "`arch.dim: 4096 -> 64`" in body
    assert "No base model is recorded" in body
    assert read_document(folder).base_model is None


def test_an_unchanged_model_keeps_its_name(tmp_path: Path) -> None:
    meta, body = _card(zoo.load("tiny-code").save(tmp_path / "copy"))
    assert body.lstrip().startswith("# tiny-code\n") and "Built from" not in body


def test_base_model_only_when_the_weights_come_from_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import HfApi

    with HubServer(tokens={"hf_meta": "codellama", "hf_alice": "alice"}, lfs_threshold=4096) as server:
        hub_env(monkeypatch, server, tmp_path / "cache", token="hf_alice")
        hf_llama(theta=1e6).save_pretrained(tmp_path / "hf")
        HfApi(token="hf_meta").create_repo("codellama/CodeLlama-7b-hf")
        HfApi(token="hf_meta").upload_folder(repo_id="codellama/CodeLlama-7b-hf", folder_path=tmp_path / "hf")
        overrides = TINY + ["arch.attention.n_heads=4", "arch.max_seq_len=256", "tokenizer.infill=null"]
        m = zoo.load("codellama-7b", overrides, backend="eager")
        assert m.weights_from == "codellama/CodeLlama-7b-hf"
        meta, body = _card(m.save(tmp_path / "small-codellama"))
        assert meta["base_model"] == "codellama/CodeLlama-7b-hf"  # the weights were read from that repo
        assert body.lstrip().startswith("# small-codellama\n") and "`arch.max_seq_len: 16384 -> 256`" in body

        again = zoo.load(tmp_path / "small-codellama")  # a local zoo folder: zoo.yaml remembers
        assert again.weights_from == "codellama/CodeLlama-7b-hf"
        assert _card(again.save(tmp_path / "again"))[0]["base_model"] == "codellama/CodeLlama-7b-hf"

        built = zoo.build("llama-2-7b", SMALL)
        zoo.push(built, "alice/random-small")
        meta, body = _card(Path(zoo.hub.download("alice/random-small")[0]))
        assert "base_model" not in meta and body.lstrip().startswith("# random-small\n")
        pulled = zoo.load("alice/random-small")  # its weights now come from alice's repo
        assert pulled.weights_from == "alice/random-small"
        zoo.push(tmp_path / "small-codellama", "alice/pushed-folder")
        meta, _ = _card(Path(zoo.hub.download("alice/pushed-folder")[0]))
        assert meta["base_model"] == "codellama/CodeLlama-7b-hf"
