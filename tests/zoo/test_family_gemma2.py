"""The Gemma-2 family (specs/formats/transformers/gemma2.yaml, key map hf-gemma2): sandwich norms
scaling by (1 + w), embeddings times sqrt(hidden), GeGLU (tanh GELU), attention scaled by
query_pre_attn_scalar ** -0.5 (other than head_dim ** -0.5) and soft-capped, soft-capped final
logits, GQA, and a sliding window (shorter than the sequences) on the layers layer_types names
(by default every other one from layer 0; transformers' window holds `sliding_window` keys, the
query's own included, as zoo's does)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.families import check_family, reference_model
from zoo.formats.hf.family import family_of, read_config, write_config

WINDOW = 6
SMALL = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
             head_dim=32, max_position_embeddings=256, rms_norm_eps=1e-6, sliding_window=WINDOW,
             rope_parameters={"rope_type": "default", "rope_theta": 10000.0})


@pytest.mark.parametrize("case", ["default-layers", "layer-types", "no-caps-untied"])
def test_gemma2(tmp_path: Path, case: str) -> None:
    from transformers import Gemma2Config, Gemma2ForCausalLM

    extra: dict = {"query_pre_attn_scalar": 24, "attn_logit_softcapping": 5.0, "final_logit_softcapping": 10.0}
    if case == "layer-types":
        extra["layer_types"] = ["full_attention", "sliding_attention", "sliding_attention", "full_attention"]
    if case == "no-caps-untied":
        extra = {"query_pre_attn_scalar": 32, "attn_logit_softcapping": None, "final_logit_softcapping": None,
                 "tie_word_embeddings": False}
    ref = reference_model(Gemma2Config, Gemma2ForCausalLM, **SMALL, **extra)
    m = check_family(ref, tmp_path, "gemma2", seq=4 * WINDOW + 3)
    a = m.spec.arch
    sliding = [i for i in range(4) if a.block(i).attention.sliding_window == WINDOW]
    assert sliding == ([1, 2] if case == "layer-types" else [0, 2])
    assert all(a.block(i).attention.sliding_window is None for i in set(range(4)) - set(sliding))
    assert a.layout.kind == "sandwich" and a.norm.unit_offset and a.embed_scale == "sqrt_dim"
    att = a.block(0).attention
    if case == "no-caps-untied":  # query_pre_attn_scalar = head_dim: the default scale, no soft-caps
        assert att.scale is None and att.logit_softcap is None and a.logit_softcap is None and not a.tie_embeddings
    else:
        assert att.scale == 24 ** -0.5 and att.logit_softcap == 5.0 and a.logit_softcap == 10.0


def test_missing_keys_take_the_class_defaults() -> None:
    """A config without the soft-caps, scalar or window is what Gemma2Config makes of it (50, 30,
    256, 4096), not 'none'; null soft-caps are none."""
    from transformers import Gemma2Config

    cfg = Gemma2Config(**{**SMALL, "head_dim": 128}, vocab_size=128).to_dict()
    bare = {k: v for k, v in cfg.items() if k not in ("attn_logit_softcapping", "final_logit_softcapping",
                                                      "query_pre_attn_scalar", "sliding_window", "layer_types")}
    a = read_config(bare, "g").arch
    assert a.attention.logit_softcap == 50.0 and a.logit_softcap == 30.0 and a.attention.scale == 256 ** -0.5
    assert [a.block(i).attention.sliding_window for i in range(4)] == [4096, None, 4096, None]
    a = read_config({**bare, "attn_logit_softcapping": None, "final_logit_softcapping": None}, "g").arch
    assert a.attention.logit_softcap is None and a.logit_softcap is None
    hub = {**cfg, "hidden_act": "gelu_pytorch_tanh", "cache_implementation": "hybrid", "sliding_window_size": 6}
    assert read_config(hub, "g").arch.ffn.activation == "gelu_tanh"


def test_query_pre_attn_scalar_round_trips() -> None:
    """Gemma-2 27B's scalar is hidden / heads (144), not head_dim (128)."""
    from transformers import Gemma2Config

    spec = read_config(Gemma2Config(**{**SMALL, "head_dim": 128}, vocab_size=128, query_pre_attn_scalar=144).to_dict(),
                       "g")
    assert spec.arch.attention.scale == 144 ** -0.5
    assert write_config(spec, family_of("gemma2"))["query_pre_attn_scalar"] == 144
