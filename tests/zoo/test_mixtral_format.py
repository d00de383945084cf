"""Mixtral interop: the hf-mixtral key maps (per-expert tensors, as save_pretrained writes them,
and transformers 5's fused experts) round-trip bit-exactly, folders transformers writes load in
the zoo with equal logits, and folders the zoo writes load in transformers with equal logits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import zoo
from zoo.checkpoint import CheckpointError
from zoo.formats import bind, get_format, open_checkpoint, plan_for
from tests.runtime.test_moe_parity import mixtral_from, tiny


def _logits(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(tokens)
    return getattr(out, "logits", out)


@pytest.mark.parametrize("fmt", ["hf-mixtral", "hf-mixtral-fused"])
def test_mixtral_formats_round_trip_bit_exactly(fmt: str) -> None:
    m = tiny()
    plan = bind(get_format(fmt), m.spec, {k: tuple(v.shape) for k, v in m.state_dict().items()})
    state = m.state_dict()
    external = dict(plan.to_external(state))
    assert {k: tuple(v.shape) for k, v in external.items()} == plan.external_shapes()
    back = {c: t for b, ts in plan.to_canonical(external.__getitem__) for c, t in zip(b.canonical, ts)}
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)


def test_external_names_are_transformers_names() -> None:
    m = tiny()
    ref = mixtral_from(m)  # loads the fused names strictly
    per_expert = plan_for("hf-mixtral", m.spec).external_shapes()
    assert per_expert["model.layers.2.block_sparse_moe.experts.5.w1.weight"] == (48, 64)
    assert per_expert["model.layers.0.block_sparse_moe.experts.0.w2.weight"] == (64, 48)
    assert per_expert["model.layers.1.block_sparse_moe.gate.weight"] == (6, 64)
    assert not any("mlp" in k for k in per_expert)
    fused = plan_for("hf-mixtral-fused", m.spec).external_shapes()
    assert fused == {k: tuple(v.shape) for k, v in ref.state_dict().items()}


@pytest.mark.parametrize("original_format", [True, False])
def test_transformers_save_pretrained_loads_in_zoo(tmp_path: Path, original_format: bool) -> None:
    m = tiny()
    ref = mixtral_from(m)
    ref.save_pretrained(tmp_path / "hf", save_original_format=original_format)
    names = json.dumps(sorted(_safetensors_names(tmp_path / "hf")))
    assert ("block_sparse_moe.experts.0.w1.weight" in names) == original_format
    assert ("mlp.experts.gate_up_proj" in names) == (not original_format)
    ckpt = open_checkpoint(tmp_path / "hf")
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert ckpt.plan(ckpt.spec, shapes).format.name == ("hf-mixtral" if original_format else "hf-mixtral-fused")
    ffn = ckpt.spec.arch.block(0).ffn
    assert (ffn.kind, ffn.n_experts, ffn.top_k, ffn.hidden_dim, ffn.router.aux_loss_coef) == ("moe", 6, 2, 48, 0.02)
    loaded = zoo.load(tmp_path / "hf", backend="eager")
    tokens = torch.randint(0, 128, (2, 15))
    torch.testing.assert_close(_logits(loaded, tokens), _logits(ref, tokens), atol=1e-4, rtol=1e-4)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in m.state_dict().items())


def _safetensors_names(folder: Path) -> list[str]:
    from safetensors import safe_open

    out: list[str] = []
    for f in folder.glob("*.safetensors"):
        with safe_open(str(f), "pt") as fh:
            out += list(fh.keys())
    return out


@pytest.mark.parametrize("how", ["export_hf", "save"])
def test_zoo_folders_load_in_transformers(tmp_path: Path, how: str) -> None:
    from transformers import AutoModelForCausalLM, MixtralForCausalLM

    from zoo.formats.export import export_hf

    m = tiny()
    if how == "export_hf":
        export_hf(m, tmp_path / "out")
    else:
        m.save(tmp_path / "out")
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["model_type"] == "mixtral" and cfg["num_local_experts"] == 6 and cfg["num_experts_per_tok"] == 2
    names = _safetensors_names(tmp_path / "out")
    assert "model.layers.0.block_sparse_moe.experts.5.w3.weight" in names  # what save_pretrained writes
    ref = AutoModelForCausalLM.from_pretrained(tmp_path / "out", attn_implementation="eager").float().eval()
    assert isinstance(ref, MixtralForCausalLM)
    tokens = torch.randint(0, 128, (2, 15))
    torch.testing.assert_close(_logits(ref, tokens), _logits(m, tokens), atol=1e-4, rtol=1e-4)
    again = zoo.load(tmp_path / "out", backend="eager")
    torch.testing.assert_close(_logits(again, tokens), _logits(m, tokens), atol=0, rtol=0)


def test_a_missing_expert_is_named(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    m = tiny()
    mixtral_from(m).save_pretrained(tmp_path / "hf")
    path = tmp_path / "hf" / "model.safetensors"
    state = load_file(str(path))
    del state["model.layers.1.block_sparse_moe.experts.3.w2.weight"]
    save_file(state, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"missing \(1\): model\.layers\.1\.block_sparse_moe\.experts\.3\.w2"):
        zoo.load(tmp_path / "hf", backend="eager")
