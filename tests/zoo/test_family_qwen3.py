"""The Qwen3 family (specs/formats/transformers/qwen3.yaml, key map hf-qwen3): per-head q/k
RMSNorms before RoPE, an explicit head_dim other than hidden_size / heads, attention biases when
attention_bias, tied and untied embeddings, sliding windows from max_window_layers on."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.families import check_family, reference_model

SMALL = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
             head_dim=32, max_position_embeddings=256, rms_norm_eps=1e-6,
             rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})


@pytest.mark.parametrize("bias,tie", [(False, True), (True, False)])
def test_qwen3(tmp_path: Path, bias: bool, tie: bool) -> None:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    ref = reference_model(Qwen3Config, Qwen3ForCausalLM, **SMALL, attention_bias=bias, tie_word_embeddings=tie)
    m = check_family(ref, tmp_path, "qwen3")
    att = m.spec.arch.block(0).attention
    assert att.head_dim == 32 and att.qk_norm.kind == "per-head" and att.qk_norm.norm.eps == 1e-6
    assert att.qkv_bias == att.o_bias == bias and m.spec.arch.tie_embeddings == tie
    assert m.state_dict()["blocks.2.attn.k_norm.weight"].shape == (32,)


def test_qwen3_sliding_window(tmp_path: Path) -> None:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    ref = reference_model(Qwen3Config, Qwen3ForCausalLM, **SMALL, use_sliding_window=True, sliding_window=8,
                          max_window_layers=1)
    m = check_family(ref, tmp_path, "qwen3", seq=24)
    assert [m.spec.arch.block(i).attention.sliding_window for i in range(3)] == [None, 8, 8]


def test_the_qk_norm_changes_the_logits(tmp_path: Path) -> None:
    """The q/k norm weights are read: the folder's logits move when one is reset to 1."""
    import torch

    import zoo
    from tests.families import logits_of, save_reference
    from transformers import Qwen3Config, Qwen3ForCausalLM

    ref = reference_model(Qwen3Config, Qwen3ForCausalLM, **SMALL)
    tokens = torch.randint(3, 128, (1, 12), generator=torch.Generator().manual_seed(0))
    before = logits_of(zoo.load(save_reference(ref, tmp_path / "a")), tokens)
    with torch.no_grad():
        ref.model.layers[1].self_attn.k_norm.weight.fill_(1.0)
    after = logits_of(zoo.load(save_reference(ref, tmp_path / "b")), tokens)
    torch.testing.assert_close(after, logits_of(ref, tokens), atol=1e-4, rtol=1e-4)
    assert (after - before).abs().max() > 1e-2
