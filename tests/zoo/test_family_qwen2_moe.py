"""The Qwen2-MoE family (specs/formats/transformers/qwen2_moe.yaml, key maps hf-qwen2-moe and
-fused): routed SwiGLU experts with and without renormalized top-k weights, the sigmoid-gated
shared expert, q/k/v biases (and none), GQA; configs with dense layers (decoder_sparse_step,
mlp_only_layers) or Qwen2-MoE's sliding windows stop the load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.families import check_family, reference_model, save_reference

SMALL = dict(hidden_size=64, intermediate_size=80, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=256, rms_norm_eps=1e-6, num_experts=8, num_experts_per_tok=3,
             moe_intermediate_size=32, shared_expert_intermediate_size=96,
             rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})


@pytest.mark.parametrize("norm_topk,qkv_bias", [(False, True), (True, False)])
def test_qwen2_moe(tmp_path: Path, norm_topk: bool, qkv_bias: bool) -> None:
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

    ref = reference_model(Qwen2MoeConfig, Qwen2MoeForCausalLM, **SMALL, norm_topk_prob=norm_topk, qkv_bias=qkv_bias)
    m = check_family(ref, tmp_path, "qwen2_moe")
    ffn, att = m.spec.arch.block(2).ffn, m.spec.arch.block(2).attention
    assert ffn.n_experts == 8 and ffn.top_k == 3 and ffn.shared.hidden_dim == 96 and ffn.shared_gate
    assert ffn.router.normalize_top_k == norm_topk and ffn.router.weight_dtype == "activations"
    assert att.qkv_bias == qkv_bias and not att.o_bias


@pytest.mark.parametrize("key,value", [("decoder_sparse_step", 2), ("mlp_only_layers", [1]),
                                       ("use_sliding_window", True)])
def test_dense_layers_and_windows_stop_the_load(tmp_path: Path, key: str, value: object) -> None:
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

    import zoo
    from zoo.formats import FormatError

    folder = save_reference(reference_model(Qwen2MoeConfig, Qwen2MoeForCausalLM, **SMALL), tmp_path / "hf")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, key: value}))
    with pytest.raises(FormatError, match=key):
        zoo.load(folder)
