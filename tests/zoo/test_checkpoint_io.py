"""Saving (what a folder holds, atomicity) and loading's checks (keys, shapes, integrity)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import zoo
from tests.zoo.weights_fixtures import GQA, TINY, hf_llama, tiny, train_tokenizer, write_meta_folder
from zoo.checkpoint import CheckpointError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    pytest.importorskip("sentencepiece")
    from zoo.runtime.tokenizers import SentencePieceTokenizer

    return SentencePieceTokenizer.from_file(train_tokenizer(tmp_path_factory.mktemp("spm")))


def test_save_writes_spec_shards_index_tokenizer_card_and_config(tmp_path: Path, tokenizer) -> None:  # noqa: ANN001
    m = zoo.build("codellama-7b", TINY + GQA + ["tokenizer.infill=null"], tokenizer=tokenizer)
    folder = m.save(tmp_path / "out", max_shard_size="60KB")
    names = {p.name for p in folder.iterdir()}
    shards = sorted(n for n in names if n.endswith(".safetensors"))
    assert len(shards) > 1 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert {"zoo.yaml", "model.safetensors.index.json", "config.json", "generation_config.json", "README.md",
            "tokenizer.model"} <= names
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no temporary folder left behind

    doc = yaml.safe_load((folder / "zoo.yaml").read_text())
    assert doc["schema_version"] == 1 and doc["fingerprint"] == m.spec.fingerprint() and doc["layout"] == "hf-llama"
    assert set(doc["files"]) == names - {"zoo.yaml", "README.md"}
    assert all(len(f["sha256"]) == 64 and f["size"] == (folder / n).stat().st_size for n, f in doc["files"].items())
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == {k for k in _hf_names(m)} and set(index["weight_map"].values()) == set(shards)
    assert index["metadata"]["total_size"] == sum(p.numel() * 4 for p in m.parameters())
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["rope_parameters"]["rope_theta"] == 1e6

    card = (folder / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "zoo" and front["license"] == "llama2"
    assert front["zoo"]["parameters"] == m.num_parameters and "base_model" not in front  # random weights
    assert f"| parameters | {m.num_parameters:,} |" in card and 'zoo.load("' in card and "AutoModelForCausalLM" in card

    back = zoo.load(folder)
    assert back.spec == m.spec and back.tokenizer is not None
    assert back.tokenizer.encode("hello world") == tokenizer.encode("hello world")


def _hf_names(m) -> list[str]:  # noqa: ANN001
    from zoo.formats.export import external_state

    return list(external_state(m, "hf-llama"))


def test_specs_transformers_cannot_run_are_saved_under_canonical_names(tmp_path: Path) -> None:
    m = zoo.build("llama-2-7b", TINY + ['arch.layers={"1": {ffn: {kind: gelu-mlp, hidden_dim: 96}}}'])
    folder = m.save(tmp_path / "out")
    assert yaml.safe_load((folder / "zoo.yaml").read_text())["layout"] == "canonical"
    assert not (folder / "config.json").exists()
    card = (folder / "README.md").read_text()
    assert "transformers cannot load this folder: llama: LlamaForCausalLM config cannot express blocks[1].ffn" in card
    back = zoo.load(folder)
    assert all(torch.equal(back.state_dict()[k], v) for k, v in m.state_dict().items())


def test_zoo_yaml_edited_by_hand_is_refused_but_older_schemas_load(tmp_path: Path) -> None:
    from zoo.checkpoint import written_fingerprint

    m = tiny()
    folder = m.save(tmp_path / "out")
    path = folder / "zoo.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["arch"]["norm"]["eps"] = 1e-3
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(CheckpointError, match="fingerprint mismatch .* edited by hand"):
        zoo.load(folder)
    # a checkpoint written before the schema gained a field with a default still loads
    doc["spec"]["arch"]["norm"]["eps"] = m.spec.arch.norm.eps
    del doc["spec"]["schema_version"], doc["spec"]["weights"]["revision"]  # both at their defaults
    doc["fingerprint"] = written_fingerprint(doc["spec"])
    path.write_text(yaml.safe_dump(doc))
    assert zoo.load(folder).spec == m.spec


def _mapped_file(ptr: int) -> str | None:
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split()
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        if lo <= ptr < hi:
            return parts[-1] if len(parts) >= 6 else None
    return None


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_same_dtype_loads_are_zero_copy_views_of_the_file(tmp_path: Path) -> None:
    m = tiny()
    folder = m.save(tmp_path / "out")
    back = zoo.load(folder)
    assert _mapped_file(back.blocks[1].ffn.down.weight.data_ptr()).endswith("model.safetensors")
    cast = zoo.load(folder, dtype="bfloat16")
    assert _mapped_file(cast.blocks[1].ffn.down.weight.data_ptr()) != _mapped_file(back.blocks[1].ffn.down.weight.data_ptr())


def _hf_folder(tmp_path: Path, **save_kw) -> Path:  # noqa: ANN003
    hf_llama().save_pretrained(tmp_path / "hf", **save_kw)
    return tmp_path / "hf"


def test_every_key_and_shape_problem_is_reported_at_once_before_loading(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import load_file, save_file

    folder = _hf_folder(tmp_path)
    state = load_file(folder / "model.safetensors")
    del state["model.layers.1.mlp.up_proj.weight"]
    state["model.layers.0.self_attn.rotary.weight"] = torch.zeros(3)
    state["model.layers.0.self_attn.q_proj.weight"] = torch.zeros(64, 32)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    from zoo.checkpoint import SafetensorsSource

    monkeypatch.setattr(SafetensorsSource, "get", lambda *a: pytest.fail("a tensor was read before the check"))
    with pytest.raises(CheckpointError) as e:
        zoo.load(folder)
    msg = str(e.value)
    assert "missing (1): model.layers.1.mlp.up_proj.weight" in msg
    assert "unexpected (1): model.layers.0.self_attn.rotary.weight" in msg
    assert "model.layers.0.self_attn.q_proj.weight: model wants [64, 64], file has [64, 32]" in msg
    assert str(folder) in msg


def test_truncated_and_corrupt_safetensors_name_the_file(tmp_path: Path) -> None:
    folder = _hf_folder(tmp_path)
    f = folder / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: corrupt safetensors file \(truncated"):
        zoo.load(folder)
    f.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all" + data[24:])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: corrupt safetensors file"):
        zoo.load(folder)


def test_a_shard_missing_from_the_index_is_named(tmp_path: Path) -> None:
    folder = _hf_folder(tmp_path, max_shard_size="40KB")
    victim = sorted(folder.glob("model-*.safetensors"))[1]
    index = folder / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    name, shard = next(iter(data["weight_map"].items()))
    data["weight_map"][name] = victim.name if shard != victim.name else shard.replace("00001", "00002")
    index.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=f"index names tensors its shards do not hold: {name}"):
        zoo.load(folder)
    victim.unlink()
    with pytest.raises(CheckpointError, match=f"{victim.name} named by the index are missing"):
        zoo.load(folder)


def test_zoo_checkpoint_size_and_checksum_checks_name_the_file(tmp_path: Path) -> None:
    folder = tiny().save(tmp_path / "out", max_shard_size="60KB")
    shard = sorted(folder.glob("model-*.safetensors"))[1]
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF  # same size, different bytes: only the checksum sees it
    shard.write_bytes(bytes(data))
    zoo.load(folder)  # the default check is sizes only (cheap)
    with pytest.raises(CheckpointError, match=f"{shard.name}: sha256 mismatch"):
        zoo.load(folder, verify=True)
    shard.write_bytes(bytes(data[:-8]))
    with pytest.raises(CheckpointError, match=f"{shard.name}.*truncated"):
        zoo.load(folder)


class _Boom:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("touch pwned",))


def test_pickles_are_never_executed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_meta_folder(hf_llama(), tmp_path / "meta")
    monkeypatch.chdir(tmp_path)
    torch.save({"tok_embeddings.weight": torch.zeros(2), "x": _Boom()}, folder / "consolidated.00.pth")
    with pytest.raises(CheckpointError, match="consolidated.00.pth: refused"):
        zoo.load(folder)
    assert not (tmp_path / "pwned").exists()


def test_a_gap_in_meta_shards_is_named(tmp_path: Path) -> None:
    folder = write_meta_folder(hf_llama(), tmp_path / "meta", shards=2)
    (folder / "consolidated.00.pth").unlink()
    with pytest.raises(CheckpointError, match=r"shard\(s\) consolidated\.00\.pth missing"):
        zoo.load(folder)


KILLER = """
import os, signal, sys
import safetensors.torch as st
import zoo
m = zoo.build("llama-2-7b", {tiny!r})
real = st.save_file
def save_then_die(tensors, path, metadata=None):
    real(tensors, path, metadata=metadata)
    os.kill(os.getpid(), signal.SIGKILL)  # killed midway: one shard written
st.save_file = save_then_die
fresh, existing = sys.argv[1:]
pid = os.fork()
if pid == 0:
    m.save(fresh, max_shard_size=50_000)  # a new folder
_, status = os.waitpid(pid, 0)
assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
m.save(existing, max_shard_size=50_000)  # over an existing checkpoint
"""


def test_a_save_killed_midway_leaves_no_partial_checkpoint(tmp_path: Path) -> None:
    fresh, existing = tmp_path / "fresh", tmp_path / "existing"
    good = tiny()
    good.save(existing)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", KILLER.format(tiny=TINY), str(fresh), str(existing)], env=env,
                         capture_output=True, timeout=120)
    assert run.returncode == -9, run.stderr.decode()[-2000:]
    assert not fresh.exists()  # no partial checkpoint where the new one was going
    back = zoo.load(existing, verify=True)  # the old one stays whole and loadable
    assert all(torch.equal(back.state_dict()[k], v) for k, v in good.state_dict().items())
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert any(n.startswith(".fresh.tmp-") for n in leftovers) and any(n.startswith(".existing.tmp-") for n in leftovers)
    good.save(existing)
    good.save(fresh)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # swept by the next saves


def test_saved_folders_get_the_usual_permissions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import stat

    import zoo

    m = zoo.build("llama-2-7b", ["arch.dim=32", "arch.n_layers=1", "arch.vocab_size=64", "arch.ffn.hidden_dim=64",
                                 "arch.attention.n_heads=4"], seed=0)
    old = os.umask(0o022)
    try:
        out = m.save(tmp_path / "ckpt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o644}
