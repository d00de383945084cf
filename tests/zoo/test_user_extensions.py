"""A user's own architecture and layout, no Python: `zoo.load(folder, spec=, format=)`, the same
flags on the CLI, and ZOO_PATH folders whose specs, key maps and transformers families are found
like the catalog's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import zoo
from zoo.catalog import specs_root
from zoo.checkpoint import CheckpointError
from zoo.checkpoint.tensors import save_sharded
from zoo.cli import main
from zoo.formats import FormatError
from zoo.formats.export import export_hf, external_state

SPEC = """\
family: my-arch
description: a LayerNorm, plain-MLP, parallel-block decoder
arch:
  kind: decoder
  dim: 64
  n_layers: 2
  vocab_size: 128
  max_seq_len: 128
  layout: {kind: parallel, shared_norm: true}
  norm: {kind: layernorm, eps: 1.0e-5}
  attention: {kind: attention, n_heads: 4, qkv_bias: true, rope: {theta: 10000.0, fraction: 0.5}}
  ffn: {kind: gelu-mlp, hidden_dim: 96}
"""
LAYOUT = """\
name: my-layout
storage: safetensors
keys:
  embed.weight: tok.weight
  norm.weight: final.g
  norm.bias: final.b
  output.weight: head.weight
  blocks.{i}.attn_norm.weight: h.{i}.ln.g
  blocks.{i}.attn_norm.bias: h.{i}.ln.b
  blocks.{i}.attn.o.weight: h.{i}.attn.out.weight
  blocks.{i}.ffn.up.weight: h.{i}.mlp.fc.weight
  blocks.{i}.ffn.up.bias: h.{i}.mlp.fc.bias
  blocks.{i}.ffn.down.weight: h.{i}.mlp.proj.weight
  blocks.{i}.ffn.down.bias: h.{i}.mlp.proj.bias
groups:
  - canonical: ["blocks.{i}.attn.q.weight", "blocks.{i}.attn.k.weight", "blocks.{i}.attn.v.weight"]
    external: ["h.{i}.attn.qkv.weight"]
    transforms: [{split: {dim: 0, sizes: [q_out, kv_out, kv_out]}}]
  - canonical: ["blocks.{i}.attn.q.bias", "blocks.{i}.attn.k.bias", "blocks.{i}.attn.v.bias"]
    external: ["h.{i}.attn.qkv.bias"]
    transforms: [{split: {dim: 0, sizes: [q_out, kv_out, kv_out]}}]
"""


@pytest.fixture()
def user_dir(tmp_path: Path) -> Path:
    d = tmp_path / "mine"
    (d / "formats").mkdir(parents=True)
    (d / "my-arch.yaml").write_text(SPEC)
    (d / "formats" / "my-layout.yaml").write_text(LAYOUT)
    return d


def _folder(user_dir: Path, tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    m = zoo.build(str(user_dir / "my-arch.yaml"), seed=3).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.3)
    state = external_state(m, str(user_dir / "formats" / "my-layout.yaml"))
    assert "h.0.attn.qkv.weight" in state and "blocks.0.attn.q.weight" not in state
    folder = tmp_path / "weights"
    folder.mkdir()
    save_sharded(state, folder, 1 << 30, metadata={})
    return folder, m


def test_a_new_layout_loads_with_a_spec_and_a_format(user_dir: Path, tmp_path: Path) -> None:
    folder, m = _folder(user_dir, tmp_path)
    tokens = torch.randint(0, 128, (2, 12))
    loaded = zoo.load(folder, spec=user_dir / "my-arch.yaml", format=str(user_dir / "formats" / "my-layout.yaml"))
    with torch.no_grad():
        assert m(tokens).abs().max() > 1
        torch.testing.assert_close(loaded(tokens), m(tokens), atol=0, rtol=0)
    with pytest.raises(CheckpointError, match="needs a spec too"):
        zoo.load(folder, format=str(user_dir / "formats" / "my-layout.yaml"))
    with pytest.raises(FormatError, match="unknown weights format 'no-such-layout'"):
        zoo.load(folder, spec=user_dir / "my-arch.yaml", format="no-such-layout")


def test_zoo_path_finds_specs_and_formats_by_name(user_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    folder, m = _folder(user_dir, tmp_path)
    with pytest.raises(zoo.UnknownModelError):
        zoo.spec("my-arch")
    monkeypatch.setenv("ZOO_PATH", f"{tmp_path / 'nothing-here'}:{user_dir}")
    assert zoo.spec("my-arch").arch.layout.kind == "parallel"
    loaded = zoo.load(folder, spec="my-arch", format="my-layout")
    tokens = torch.randint(0, 128, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens), m(tokens), atol=0, rtol=0)
    assert main(["list", "--family", "my-arch"]) == 0
    assert "my-arch" in capsys.readouterr().out
    out = tmp_path / "as-zoo"
    assert main(["convert", str(folder), "--spec", "my-arch", "--format", "my-layout", "--to", "zoo", str(out)]) == 0
    with torch.no_grad():
        torch.testing.assert_close(zoo.load(out)(tokens), m(tokens), atol=0, rtol=0)


def test_a_user_transformers_family_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model_type zoo does not ship, mapped by a family file in a ZOO_PATH folder."""
    m = zoo.build("llama-2-7b", ["arch.dim=64", "arch.n_layers=2", "arch.attention.n_heads=4",
                                 "arch.ffn.hidden_dim=96", "arch.vocab_size=128"], seed=0).eval()
    folder = export_hf(m, tmp_path / "hf")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["my_eps"] = cfg.pop("rms_norm_eps")
    (folder / "config.json").write_text(json.dumps({**cfg, "model_type": "my_llama"}))
    with pytest.raises(CheckpointError, match="model_type 'my_llama' has no zoo format"):
        zoo.load(folder)
    d = tmp_path / "mine" / "formats" / "transformers"
    d.mkdir(parents=True)
    llama = (specs_root() / "formats" / "transformers" / "llama.yaml").read_text()
    (d / "my_llama.yaml").write_text(llama.replace("model_type: llama", "model_type: my_llama")
                                     .replace("rms_norm_eps:", "my_eps:"))
    monkeypatch.setenv("ZOO_PATH", str(tmp_path / "mine"))
    tokens = torch.randint(0, 128, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(zoo.load(folder)(tokens), m(tokens), atol=0, rtol=0)
