"""The Phi-3 family (specs/formats/transformers/phi3.yaml, key map hf-phi3): transformers folders
with fused qkv_proj / gate_up_proj load by model_type with equal logits, export back to configs
transformers loads, decode equal; LongRoPE past the original context, partial rotary and a sliding
window shorter than the sequence."""

from __future__ import annotations

from pathlib import Path

from tests.families import check_family, reference_model

SMALL = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             rms_norm_eps=1e-5)
ORIGINAL = 16


def test_phi3_sliding_window(tmp_path: Path) -> None:
    from transformers import Phi3Config, Phi3ForCausalLM

    ref = reference_model(Phi3Config, Phi3ForCausalLM, **{**SMALL, "num_hidden_layers": 3}, sliding_window=8,
                          max_position_embeddings=256, original_max_position_embeddings=256)
    m = check_family(ref, tmp_path, "phi3", seq=24)
    assert m.spec.arch.block(2).attention.sliding_window == 8


def test_phi3_longrope_partial_rotary(tmp_path: Path) -> None:
    from transformers import Phi3Config, Phi3ForCausalLM

    rotary = 16 // 2  # head_dim 16, half of it rotates: 4 frequencies
    rope = {"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
            "short_factor": [1.0 + 0.25 * i for i in range(rotary // 2)],
            "long_factor": [2.0 + 1.5 * i for i in range(rotary // 2)]}
    ref = reference_model(Phi3Config, Phi3ForCausalLM, **SMALL, max_position_embeddings=4 * ORIGINAL,
                          original_max_position_embeddings=ORIGINAL, rope_parameters=rope)
    m = check_family(ref, tmp_path, "phi3", seq=40)
    rope_spec = m.spec.arch.block(0).attention.rope
    assert rope_spec.scaling.kind == "longrope" and rope_spec.fraction == 0.5
