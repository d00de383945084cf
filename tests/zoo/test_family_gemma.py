"""The Gemma family (specs/formats/transformers/gemma.yaml, key map hf-llama): RMSNorms scaling
by (1 + w), embeddings times sqrt(hidden), GeGLU with the tanh GELU (the legacy `gelu` the first
Hub configs hold included), an explicit head_dim other than hidden / heads, MQA, tied embeddings.
And the bug this family's arrival closes: a Gemma spec forced onto a plain Llama folder
(`zoo.load(folder, spec=...)`) is refused, naming the difference, instead of loading with wrong
logits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import zoo
from tests.families import check_family, reference_model, save_reference
from zoo.checkpoint import CheckpointError
from zoo.formats import FormatError
from zoo.formats.hf.family import read_config

SMALL = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=1,
             head_dim=32, max_position_embeddings=256, rms_norm_eps=1e-6)


@pytest.mark.parametrize("tie", [True, False])
def test_gemma(tmp_path: Path, tie: bool) -> None:
    from transformers import GemmaConfig, GemmaForCausalLM

    ref = reference_model(GemmaConfig, GemmaForCausalLM, **SMALL, tie_word_embeddings=tie,
                          rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    m = check_family(ref, tmp_path, "gemma", seq=24)
    a = m.spec.arch
    assert a.embed_scale == "sqrt_dim" and a.norm.unit_offset and a.tie_embeddings == tie
    blk = a.block(2)
    assert blk.ffn.kind == "geglu" and blk.ffn.activation == "gelu_tanh"
    assert blk.attention.head_dim == 32 and blk.attention.n_kv_heads == 1


def test_legacy_gelu_reads_as_the_tanh_approximation() -> None:
    """The first Hub Gemma configs say hidden_act "gelu" (GemmaConfig runs gelu_pytorch_tanh for
    it); later ones add hidden_activation."""
    from transformers import GemmaConfig

    cfg = GemmaConfig(**SMALL, vocab_size=128).to_dict()
    for extra in ({"hidden_act": "gelu"}, {"hidden_act": "gelu", "hidden_activation": "gelu_pytorch_tanh"},
                  {"hidden_act": "gelu", "hidden_activation": None}):
        spec = read_config({**cfg, **extra}, "g")
        assert spec.arch.ffn.kind == "geglu" and spec.arch.ffn.activation == "gelu_tanh", extra
    assert read_config({**cfg, "use_bidirectional_attention": None}, "g").arch.norm.unit_offset
    with pytest.raises(FormatError, match="use_bidirectional_attention"):
        read_config({**cfg, "use_bidirectional_attention": True}, "g")


@pytest.mark.parametrize("with_format", [False, True])
def test_gemma_spec_on_a_llama_folder_is_refused(tmp_path: Path, with_format: bool) -> None:
    """A Llama checkpoint has the tensor names and shapes a same-sized Gemma spec asks for, so
    only config.json can tell them apart: the load must stop on it, naming where they differ."""
    from transformers import GemmaConfig, LlamaConfig, LlamaForCausalLM

    llama = dict(SMALL, tie_word_embeddings=True)
    folder = save_reference(reference_model(LlamaConfig, LlamaForCausalLM, **llama), tmp_path / "llama")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["model_type"] == "llama"
    gemma = read_config(GemmaConfig(**llama, vocab_size=cfg["vocab_size"], hidden_act="silu").to_dict(),
                        "gemma-on-llama")
    assert gemma.arch.norm.unit_offset and gemma.arch.embed_scale == "sqrt_dim"
    kwargs = {"format": "hf-llama"} if with_format else {}
    with pytest.raises(CheckpointError, match="describes other math than the spec gemma-on-llama") as err:
        zoo.load(folder, spec=gemma, **kwargs)
    assert "blocks[0].norm.kwargs.unit_offset (True, read back as False)" in str(err.value)
    zoo.load(folder)  # the folder itself is fine: the config it holds describes it
