"""Interop both ways: transformers' save_pretrained -> zoo; zoo's save -> transformers; Meta's
consolidated .pth (single file and model-parallel shards) -> zoo; Meta -> HF -> zoo. Logits are
compared in float32 at 1e-4 against transformers holding the same weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import zoo
from tests.zoo.weights_fixtures import ATOL, GQA, RTOL, hf_llama, logits, tiny, write_meta_folder
from zoo.cli import main as cli

pytest.importorskip("transformers")
TOKENS = torch.randint(0, 128, (2, 13), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("case", ["mha", "gqa-sharded", "tied-theta-1e6"])
def test_transformers_folder_loads_in_zoo_with_equal_logits(case: str, tmp_path: Path) -> None:
    kw = {"mha": {}, "gqa-sharded": {"n_heads": 8, "n_kv_heads": 2},
          "tied-theta-1e6": {"tie": True, "theta": 1e6}}[case]
    ref = hf_llama(**kw)
    ref.save_pretrained(tmp_path / "hf", max_shard_size="40KB" if "sharded" in case else "5GB")
    if "sharded" in case:
        assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    m = zoo.load(tmp_path / "hf", backend="eager")
    assert m.spec.arch.tie_embeddings == kw.get("tie", False)
    assert m.spec.arch.block(0).attention.rope.theta == kw.get("theta", 1e4)
    theirs = logits(ref, TOKENS)
    assert theirs.abs().max() > 1.0
    torch.testing.assert_close(logits(m, TOKENS), theirs, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("extra", [[], ["arch.tie_embeddings=true"], ["arch.attention.rope.scaling={kind: linear, factor: 4.0}"]],
                         ids=["untied", "tied", "rope-linear-scaling"])
def test_zoo_folder_loads_in_transformers_with_equal_logits(extra: list[str], tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    m = tiny("codellama-7b", *GQA, *extra, "tokenizer.infill=null")  # RoPE theta 1e6, GQA; no infill ids in 128
    folder = m.save(tmp_path / "ckpt", max_shard_size="40KB")
    ref = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
    from zoo.runtime.modules.rope import RopeConfig
    from zoo.runtime.modules.rope import inv_frequencies

    rope = m.spec.arch.block(0).attention.rope
    factor = rope.scaling.factor if rope.scaling else 1.0  # transformers folds linear scaling into inv_freq
    want = inv_frequencies(m.spec.arch.block(0).attention.head_dim, RopeConfig(theta=1e6)) / factor
    torch.testing.assert_close(ref.model.rotary_emb.inv_freq, want, atol=0, rtol=0)
    ours = logits(m, TOKENS)
    torch.testing.assert_close(logits(ref, TOKENS), ours, atol=ATOL, rtol=RTOL)
    again = zoo.load(folder, backend="eager")  # ... and the very same folder back in zoo, bit for bit
    assert again.spec == m.spec
    assert all(torch.equal(again.state_dict()[k], v) for k, v in m.state_dict().items())


@pytest.mark.parametrize("shards", [1, 2])
def test_meta_checkpoint_loads_with_equal_logits(shards: int, tmp_path: Path) -> None:
    ref = hf_llama(n_heads=8, n_kv_heads=2)
    folder = write_meta_folder(ref, tmp_path / "meta", shards)
    if shards == 1:  # Meta's downloads keep tokenizer.model beside the model folders
        pytest.importorskip("sentencepiece")
        from tests.zoo.weights_fixtures import train_tokenizer

        train_tokenizer(tmp_path)
    m = zoo.load(folder, backend="eager")
    assert m.spec.arch.vocab_size == 128 and m.spec.arch.block(0).ffn.hidden_dim == 160
    assert (m.tokenizer is not None) == (shards == 1)
    theirs = logits(ref, TOKENS)
    torch.testing.assert_close(logits(m, TOKENS), theirs, atol=ATOL, rtol=RTOL)


def test_meta_to_hf_to_zoo_gives_identical_tensors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import AutoModelForCausalLM

    ref = hf_llama(n_heads=8, n_kv_heads=2)
    meta = write_meta_folder(ref, tmp_path / "llama-meta", shards=2)
    assert cli(["convert", str(meta), "--to", "hf", str(tmp_path / "llama-hf")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert not (tmp_path / "llama-hf" / "zoo.yaml").exists()  # a plain transformers folder
    from_meta, from_hf = zoo.load(meta), zoo.load(tmp_path / "llama-hf")
    sd = from_meta.state_dict()
    assert sd.keys() == from_hf.state_dict().keys()
    assert all(torch.equal(from_hf.state_dict()[k], v) for k, v in sd.items())
    # ... and they are transformers' own tensors: the q/k permutation undid Meta's layout exactly
    hf_sd = ref.state_dict()
    assert torch.equal(sd["blocks.1.attn.k.weight"], hf_sd["model.layers.1.self_attn.k_proj.weight"])
    converted = AutoModelForCausalLM.from_pretrained(tmp_path / "llama-hf", dtype=torch.float32)
    assert all(torch.equal(converted.state_dict()[k], v) for k, v in hf_sd.items())


def test_export_to_meta_matches_the_reference_layout(tmp_path: Path) -> None:
    """zoo's Meta export (through the key map) writes exactly what the hand-written Meta writer
    writes, shards included, and loads back bit for bit."""
    ref = hf_llama(n_heads=8, n_kv_heads=2)
    by_hand = write_meta_folder(ref, tmp_path / "hand", shards=2)
    m = zoo.load(by_hand)
    assert cli(["convert", str(by_hand), "--to", "meta", "--shards", "2", str(tmp_path / "exported")]) == 0
    for k in range(2):
        a = torch.load(by_hand / f"consolidated.0{k}.pth", weights_only=True)
        b = torch.load(tmp_path / "exported" / f"consolidated.0{k}.pth", weights_only=True)
        a.pop("rope.freqs")
        assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    back = zoo.load(tmp_path / "exported")
    assert all(torch.equal(back.state_dict()[k], v) for k, v in m.state_dict().items())


def test_dtype_and_device_on_load(tmp_path: Path) -> None:
    ref = hf_llama()
    ref.save_pretrained(tmp_path / "hf")
    m = zoo.load(tmp_path / "hf", dtype="bfloat16", device="cpu")
    assert {p.dtype for p in m.parameters()} == {torch.bfloat16}
    assert torch.equal(m.embed.weight, ref.model.embed_tokens.weight.to(torch.bfloat16))
    meta = write_meta_folder(ref, tmp_path / "meta")
    m = zoo.load(meta, dtype=torch.float16)
    assert {p.dtype for p in m.parameters()} == {torch.float16}
