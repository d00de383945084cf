"""transformers' tokenizer files in a saved folder (issue #16): `AutoTokenizer.from_pretrained`
on what `model.save` / `export_hf` wrote gives zoo's ids, for plain text (with the bos zoo
prepends) and for chat (`apply_chat_template` equals `zoo.chat.render_chat`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import zoo
from zoo.chat import render_chat
from zoo.formats.export import export_hf
from zoo.runtime.tokenizers import SentencePieceTokenizer

from tests.zoo.test_chat_templates import CONVERSATIONS, CORPUS, MISTRAL_CONTROL

transformers = pytest.importorskip("transformers")

TEXTS = ["hello world", "the quick brown fox", " leading space", "a\n  b  \n", "Ünïcödé text: 日本語 and emoji 🙂",
         "def add(a, b):\n    return a + b", "What is 2 + 2?", "x<step>y", ""]
TINY = ["arch.dim=64", "arch.n_layers=2", "arch.attention.n_heads=4", "arch.ffn.hidden_dim=96", "arch.vocab_size=400"]


@pytest.fixture(scope="module")
def spm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import sentencepiece as spm

    root = tmp_path_factory.mktemp("spm")
    (root / "corpus.txt").write_text("\n".join(CORPUS), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(root / "corpus.txt"), model_prefix=str(root / "tokenizer"),
                                   model_type="bpe", vocab_size=400, byte_fallback=True,
                                   remove_extra_whitespaces=False, control_symbols=MISTRAL_CONTROL,
                                   user_defined_symbols=["<step>"], minloglevel=2, num_threads=1,
                                   character_coverage=1.0, normalization_rule_name="identity")
    return root / "tokenizer.model"


def _saved(name: str, spm_path: Path, folder: Path, overrides: tuple[str, ...] = ()) -> tuple[Any, Path]:
    m = zoo.build(name, [*TINY, *overrides])
    m.tokenizer = SentencePieceTokenizer.from_file(spm_path)
    m.save(folder)
    return m, folder


def _hf(folder: Path) -> Any:
    return transformers.AutoTokenizer.from_pretrained(str(folder))


def _chat_ids(hf: Any, messages: list[dict[str, str]]) -> list[int]:
    out = hf.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    return list(out["input_ids"] if not isinstance(out, list) else out)


@pytest.fixture(scope="module")
def llama2(spm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    return _saved("llama-2-7b-chat", spm_path, tmp_path_factory.mktemp("save") / "llama2")


def test_sentencepiece_plain_text_ids_equal_zoos(llama2: tuple[Any, Path]) -> None:
    m, folder = llama2
    hf = _hf(folder)
    for text in TEXTS:
        assert hf(text)["input_ids"] == m._prompt_ids(text), text
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert (config["bos_token"], config["eos_token"], config["unk_token"]) == ("<s>", "</s>", "<unk>")
    assert config["add_bos_token"] is True and config["add_eos_token"] is False
    assert config["model_max_length"] == m.spec.arch.max_seq_len
    assert json.loads((folder / "special_tokens_map.json").read_text())["bos_token"] == "<s>"
    assert "tokenizer_config.json" in (folder / "zoo.yaml").read_text()  # listed by the manifest: same save


@pytest.mark.parametrize("case", sorted(CONVERSATIONS))
def test_llama_2_chat_template_equals_render_chat(llama2: tuple[Any, Path], case: str) -> None:
    m, folder = llama2
    messages = CONVERSATIONS[case]
    assert _chat_ids(_hf(folder), messages) == render_chat(m.tokenizer, m.spec.tokenizer, messages)


# The Mistral templates' Jinja (mistral-v1, mistral-v3) does not reproduce mistral-common's ids,
# which render_chat follows: v1 encodes each message alone (the Jinja's " [INST] " joins them),
# v3's [INST] / [/INST] are control pieces that transformers does not split as added tokens.
@pytest.mark.parametrize("name", ["codellama-70b-instruct"])
def test_other_sentencepiece_templates(name: str, spm_path: Path, tmp_path: Path) -> None:
    m = zoo.build(name, [*TINY, "arch.attention.n_kv_heads=2"])
    m.tokenizer = SentencePieceTokenizer.from_file(spm_path)
    folder = m.save(tmp_path / "m")
    hf = _hf(folder)
    for case, messages in sorted(CONVERSATIONS.items()):
        assert _chat_ids(hf, messages) == render_chat(m.tokenizer, m.spec.tokenizer, messages), case


def test_export_hf_writes_them_too(llama2: tuple[Any, Path], tmp_path: Path) -> None:
    m, _ = llama2
    out = export_hf(m, tmp_path / "hf")
    assert _hf(out)(TEXTS[4])["input_ids"] == m._prompt_ids(TEXTS[4])
    assert "chat_template" in json.loads((out / "tokenizer_config.json").read_text())


def test_bpe_tiny_code_ids_equal_zoos_and_no_chat_template(tmp_path: Path) -> None:
    m = zoo.load("tiny-code")
    m.save(tmp_path / "code")
    hf = _hf(tmp_path / "code")
    for text in TEXTS:
        assert hf(text)["input_ids"] == m._prompt_ids(text), text
    config = json.loads((tmp_path / "code" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast" and "chat_template" not in config
