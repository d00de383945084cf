"""The Qwen2 family (specs/formats/transformers/qwen2.yaml, key map hf-llama): q/k/v biases
without an o bias, tied and untied embeddings, GQA, and sliding windows on the layers from
max_window_layers on (shorter than the sequence), with and without `layer_types` in config.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.families import check_family, reference_model, save_reference

SMALL = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=256, rms_norm_eps=1e-6,
             rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})


@pytest.mark.parametrize("tie", [True, False])
def test_qwen2(tmp_path: Path, tie: bool) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    ref = reference_model(Qwen2Config, Qwen2ForCausalLM, **SMALL, tie_word_embeddings=tie)
    m = check_family(ref, tmp_path, "qwen2")
    att = m.spec.arch.block(3).attention
    assert att.qkv_bias and not att.o_bias and att.sliding_window is None and att.head_dim == 16
    assert m.spec.arch.tie_embeddings == tie


def test_qwen2_sliding_window_from_max_window_layers(tmp_path: Path) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    ref = reference_model(Qwen2Config, Qwen2ForCausalLM, **SMALL, use_sliding_window=True, sliding_window=8,
                          max_window_layers=2, tie_word_embeddings=True)
    assert ref.config.layer_types == ["full_attention"] * 2 + ["sliding_attention"] * 2
    m = check_family(ref, tmp_path, "qwen2", seq=24)
    assert [m.spec.arch.block(i).attention.sliding_window for i in range(4)] == [None, None, 8, 8]


def test_qwen2_config_of_transformers_4(tmp_path: Path) -> None:
    """A config.json as the Hub's Qwen2.5 repos hold it (transformers 4: rope_theta top-level, no
    layer_types, use_mrope: false): the windows come from max_window_layers, the logits are equal."""
    import torch

    from transformers import Qwen2Config, Qwen2ForCausalLM

    import zoo
    from tests.families import ATOL, RTOL, logits_of

    ref = reference_model(Qwen2Config, Qwen2ForCausalLM, **SMALL, use_sliding_window=True, sliding_window=8,
                          max_window_layers=1)
    folder = save_reference(ref, tmp_path / "hf")
    cfg = json.loads((folder / "config.json").read_text())
    del cfg["layer_types"], cfg["rope_parameters"]
    (folder / "config.json").write_text(json.dumps({**cfg, "rope_theta": 1000000.0, "use_mrope": False}))
    m = zoo.load(folder)
    assert [m.spec.arch.block(i).attention.sliding_window for i in range(4)] == [None, 8, 8, 8]
    tokens = torch.randint(3, 128, (2, 24), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(logits_of(m, tokens), logits_of(ref, tokens), atol=ATOL, rtol=RTOL)
