"""The OLMo and OLMo-2 families (specs/formats/transformers/olmo.yaml, olmo2.yaml; key maps
hf-llama, hf-olmo2): OLMo's weightless LayerNorms with attention biases, GQA, tied and untied
embeddings; OLMo-2's post-norm blocks and RMSNorm over the whole q and k projections. A
`clip_qkv` OLMo config (q/k/v clamped, which zoo does not model) stops the load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.families import check_family, reference_model

SMALL = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=256)


@pytest.mark.parametrize("bias,tie", [(True, True), (False, False)])
def test_olmo(tmp_path: Path, bias: bool, tie: bool) -> None:
    from transformers import OlmoConfig, OlmoForCausalLM

    ref = reference_model(OlmoConfig, OlmoForCausalLM, **SMALL, attention_bias=bias, tie_word_embeddings=tie,
                          clip_qkv=None, rope_parameters={"rope_type": "default", "rope_theta": 500000.0})
    m = check_family(ref, tmp_path, "olmo", seq=24)
    assert m.spec.arch.norm.kind == "nonparametric-layernorm" and m.spec.arch.tie_embeddings == tie
    assert m.spec.arch.block(0).attention.qkv_bias == bias
    assert not [n for n in m.state_dict() if "norm" in n]


def test_olmo_clip_qkv_stops_the_load(tmp_path: Path) -> None:
    from transformers import OlmoConfig, OlmoForCausalLM

    import zoo
    from tests.families import save_reference
    from zoo.formats import FormatError

    folder = save_reference(reference_model(OlmoConfig, OlmoForCausalLM, **SMALL, clip_qkv=8.0), tmp_path / "hf")
    assert json.loads((folder / "config.json").read_text())["clip_qkv"] == 8.0
    with pytest.raises(FormatError, match="clip_qkv"):
        zoo.load(folder)


@pytest.mark.parametrize("tie", [False, True])
def test_olmo2(tmp_path: Path, tie: bool) -> None:
    from transformers import Olmo2Config, Olmo2ForCausalLM

    ref = reference_model(Olmo2Config, Olmo2ForCausalLM, **SMALL, rms_norm_eps=1e-6, tie_word_embeddings=tie,
                          rope_parameters={"rope_type": "default", "rope_theta": 500000.0})
    m = check_family(ref, tmp_path, "olmo2", seq=24)
    a = m.spec.arch
    assert a.layout.kind == "post-norm" and a.norm.eps == 1e-6 and a.tie_embeddings == tie
    att = a.block(1).attention
    assert att.qk_norm.kind == "whole" and att.qk_norm.norm.eps == 1e-6
    state = m.state_dict()
    assert state["blocks.1.attn.q_norm.weight"].shape == (64,) and state["blocks.1.attn.k_norm.weight"].shape == (32,)
