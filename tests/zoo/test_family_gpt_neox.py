"""The GPT-NeoX family (Pythia; specs/formats/transformers/gpt_neox.yaml, key map hf-gpt-neox):
q/k/v fused per head, LayerNorms with biases, the two-norm parallel residual (and the pre-norm
one), partial rotary (rotary_pct), a plain GELU MLP with biases, an untied `embed_out` head; and
the `split_interleaved` transform that un-fuses the per-head q/k/v rows, round trip exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.families import check_family, reference_model
from zoo.formats.transforms import FormatError, build

SMALL = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=256, layer_norm_eps=1e-5)


@pytest.mark.parametrize("parallel,rotary_pct,bias", [(True, 0.25, True), (False, 0.5, False), (True, 1.0, True)])
def test_gpt_neox(tmp_path: Path, parallel: bool, rotary_pct: float, bias: bool) -> None:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    ref = reference_model(GPTNeoXConfig, GPTNeoXForCausalLM, **SMALL, use_parallel_residual=parallel,
                          attention_bias=bias, rotary_pct=rotary_pct, rotary_emb_base=1000)
    m = check_family(ref, tmp_path, "gpt_neox", seq=24)
    a = m.spec.arch
    assert a.layout.kind == ("parallel" if parallel else "pre-norm") and a.block(0).attention.rope.fraction == rotary_pct
    assert a.block(0).attention.rope.theta == 1000 and a.block(0).attention.qkv_bias == bias and not a.tie_embeddings


def test_pythia_style_config_reads_its_defaults(tmp_path: Path) -> None:
    """A config.json as the Pythia repos hold it (rotary_pct/rotary_emb_base top-level, or
    neither: transformers then rotates a quarter of each head) loads with transformers' math."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    import zoo
    from tests.families import logits_of, save_reference

    ref = reference_model(GPTNeoXConfig, GPTNeoXForCausalLM, **SMALL)
    folder = save_reference(ref, tmp_path / "hf")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["rope_parameters"]["partial_rotary_factor"] == 0.25
    del cfg["rope_parameters"]
    (folder / "config.json").write_text(json.dumps(cfg))
    m = zoo.load(folder).eval()
    assert m.spec.arch.block(0).attention.rope.fraction == 0.25
    tokens = torch.randint(3, 128, (1, 12))
    torch.testing.assert_close(logits_of(m, tokens), logits_of(ref, tokens), atol=1e-4, rtol=1e-4)


def test_split_interleaved_round_trip() -> None:
    heads, hd = 3, 4
    t = build({"split_interleaved": {"dim": 0, "groups": "n_heads", "sizes": ["head_dim"] * 3}},
              {"n_heads": heads, "head_dim": hd}, "test")
    fused = torch.arange(heads * 3 * hd * 5).reshape(heads * 3 * hd, 5)
    q, k, v = t.forward([fused])
    per_head = fused.reshape(heads, 3, hd, 5)
    assert torch.equal(q, per_head[:, 0].reshape(-1, 5)) and torch.equal(v, per_head[:, 2].reshape(-1, 5))
    assert torch.equal(t.inverse([q, k, v])[0], fused)
    bias = torch.randn(heads * 3 * hd)
    assert torch.equal(t.inverse(t.forward([bias]))[0], bias)
    # unequal pieces (Falcon-style grouped q heads) and another dim
    u = build({"split_interleaved": {"dim": 1, "groups": 2, "sizes": [4, 2, 2]}}, {}, "test")
    x = torch.randn(3, 16)
    parts = u.forward([x])
    assert [p.shape for p in parts] == [(3, 8), (3, 4), (3, 4)] and torch.equal(u.inverse(parts)[0], x)
    with pytest.raises(FormatError, match="groups"):
        u.forward([torch.randn(3, 15)])
