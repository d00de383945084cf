"""The StableLM family (specs/formats/transformers/stablelm.yaml, key map hf-stablelm): LayerNorms
with biases, q/k/v biases, partial rotary (default a quarter of each head), GQA, pre-norm blocks
and the parallel residual with one shared norm; per-head q/k LayerNorms are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.families import check_family, reference_model

SMALL = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=256, layer_norm_eps=1e-5)


@pytest.mark.parametrize("parallel,kv,fraction", [(False, 4, None), (True, 2, 0.5)])
def test_stablelm(tmp_path: Path, parallel: bool, kv: int, fraction: float | None) -> None:
    from transformers import StableLmConfig, StableLmForCausalLM

    rope = {"rope_type": "default", "rope_theta": 10000.0, **({"partial_rotary_factor": fraction} if fraction else {})}
    ref = reference_model(StableLmConfig, StableLmForCausalLM, **SMALL, num_key_value_heads=kv, use_qkv_bias=True,
                          use_parallel_residual=parallel, rope_parameters=rope)
    m = check_family(ref, tmp_path, "stablelm", seq=24)
    a = m.spec.arch
    assert a.layout.kind == ("parallel" if parallel else "pre-norm") and a.block(0).attention.qkv_bias
    assert a.block(0).attention.rope.fraction == (fraction or 0.25) and a.block(0).attention.n_kv_heads == kv
    if parallel:
        assert a.layout.shared_norm and m.blocks[0].ffn_norm is None


def test_per_head_qk_layernorm_is_refused(tmp_path: Path) -> None:
    from transformers import StableLmConfig, StableLmForCausalLM

    import zoo
    from tests.families import save_reference
    from zoo.formats import FormatError

    folder = save_reference(reference_model(StableLmConfig, StableLmForCausalLM, **SMALL, qk_layernorm=True),
                            tmp_path / "hf")
    assert json.loads((folder / "config.json").read_text())["qk_layernorm"] is True
    with pytest.raises(FormatError, match="qk_layernorm"):
        zoo.load(folder)
