"""The Llama, Mistral and Mixtral families (specs/formats/transformers/): transformers folders
load by model_type with equal logits, export back to configs transformers loads, decode equal."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.families import check_family, reference_model

SMALL = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=256)


def test_llama(tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    ref = reference_model(LlamaConfig, LlamaForCausalLM, **SMALL, attention_bias=True, rms_norm_eps=1e-5,
                          rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                           "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                           "original_max_position_embeddings": 16})
    m = check_family(ref, tmp_path, "llama", seq=40)
    assert m.spec.arch.attention.rope.scaling.kind == "llama3"


def test_mistral_sliding_window(tmp_path: Path) -> None:
    from transformers import MistralConfig, MistralForCausalLM

    ref = reference_model(MistralConfig, MistralForCausalLM, **SMALL, sliding_window=8, head_dim=32)
    m = check_family(ref, tmp_path, "mistral", seq=24)
    assert m.spec.arch.block(1).attention.sliding_window == 8 and m.spec.arch.block(0).attention.head_dim == 32


def test_mixtral(tmp_path: Path) -> None:
    from transformers import MixtralConfig, MixtralForCausalLM

    ref = reference_model(MixtralConfig, MixtralForCausalLM, **SMALL, num_local_experts=4, num_experts_per_tok=2)
    m = check_family(ref, tmp_path, "mixtral")
    assert m.spec.arch.ffn.n_experts == 4


@pytest.mark.parametrize("key,value", [("pretraining_tp", 2), ("some_new_knob", True)])
def test_keys_that_change_the_math_stop_the_load(tmp_path: Path, key: str, value: object) -> None:
    import json

    from transformers import LlamaConfig, LlamaForCausalLM

    import zoo
    from tests.families import save_reference
    from zoo.formats import FormatError

    folder = save_reference(reference_model(LlamaConfig, LlamaForCausalLM, **SMALL), tmp_path / "hf")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, key: value}))
    with pytest.raises(FormatError, match=key):
        zoo.load(folder)
