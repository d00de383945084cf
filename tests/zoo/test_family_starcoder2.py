"""The StarCoder2 family (specs/formats/transformers/starcoder2.yaml, key map hf-starcoder2):
LayerNorms with biases, biases on every projection, a plain GELU (tanh) MLP, GQA and a sliding
window shorter than the sequence; tied and untied embeddings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.families import check_family, reference_model

SMALL = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=256, norm_epsilon=1e-5)


@pytest.mark.parametrize("use_bias,tie", [(True, True), (False, False)])
def test_starcoder2_sliding_window(tmp_path: Path, use_bias: bool, tie: bool) -> None:
    from transformers import Starcoder2Config, Starcoder2ForCausalLM

    ref = reference_model(Starcoder2Config, Starcoder2ForCausalLM, **SMALL, sliding_window=8, use_bias=use_bias,
                          tie_word_embeddings=tie, rope_parameters={"rope_type": "default", "rope_theta": 100000.0})
    m = check_family(ref, tmp_path, "starcoder2", seq=24)
    blk = m.spec.arch.block(2)
    assert blk.attention.sliding_window == 8 and blk.ffn.kind == "gelu-mlp" and blk.ffn.activation == "gelu_tanh"
    assert blk.ffn.bias == blk.attention.qkv_bias == use_bias and m.spec.arch.tie_embeddings == tie
