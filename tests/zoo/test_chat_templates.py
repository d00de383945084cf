"""Chat templates as data (zoo/chat.py, specs/formats/chat/): the ids zoo renders equal the
reference's, id for id. The reference is transformers' `apply_chat_template` with the official
Jinja templates (tests/data/chat_templates/, copied from the released tokenizer_config.json
files) over a tokenizer both sides share, and mistral-common for the Mistral formats (its v1 /
v3 instruct tokenizers on the same SentencePiece model). Bad conversations are UsageErrors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tokenizers import Tokenizer

import zoo
from zoo.chat import load_template, render_chat, stops, template_names
from zoo.compiler.errors import UsageError
from zoo.compiler.schema import ChatSpec, TokenizerSpec
from zoo.runtime.tokenizers import BPETokenizer, SentencePieceTokenizer, train_code_tokenizer

TEMPLATES = Path(__file__).parents[1] / "data" / "chat_templates"
MISTRAL_CONTROL = ["[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]",
                   "[/TOOL_RESULTS]"]
LLAMA3 = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
          "<|eom_id|>", "<|python_tag|>"]
CHATML = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = ["def add(a, b):\n    return a + b", "the quick brown fox jumps over the lazy dog",
          "hello world, hello zoo. You are a helpful assistant!", "Source: user Destination: assistant",
          "Ünïcödé text: 日本語 and emoji 🙂", "What is 2 + 2? It is 4."] * 20

CONVERSATIONS = {
    "one user turn": [{"role": "user", "content": "Hello there"}],
    "system + multi-turn": [
        {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "It is 4.  "},
        {"role": "user", "content": " And the quick brown fox? "},
        {"role": "assistant", "content": "It jumps over the lazy dog."},
        {"role": "user", "content": "def add(a, b):\n    return a + b\n日本語 🙂"},
    ],
    "multi-turn, no system": [
        {"role": "user", "content": "hello zoo"},
        {"role": "assistant", "content": "hello world"},
        {"role": "user", "content": "Ünïcödé?"},
    ],
}


# ------------------------------------------------------------------------------ tokenizers
@pytest.fixture(scope="module")
def spm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Llama-like SentencePiece BPE (byte fallback, spaces kept) with Mistral's control tokens
    and Code Llama 70B's <step> as a user-defined piece."""
    import sentencepiece as spm

    root = tmp_path_factory.mktemp("spm")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(CORPUS), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(root / "tokenizer"), model_type="bpe",
                                   vocab_size=400, byte_fallback=True, remove_extra_whitespaces=False,
                                   control_symbols=MISTRAL_CONTROL, user_defined_symbols=["<step>"],
                                   minloglevel=2, num_threads=1, character_coverage=1.0,
                                   normalization_rule_name="identity")
    return root / "tokenizer.model"


@pytest.fixture(scope="module")
def spm(spm_path: Path) -> SentencePieceTokenizer:
    return SentencePieceTokenizer.from_file(spm_path)


def hf_tokenizer(tok: Tokenizer, **special: Any) -> Any:
    """transformers' tokenizer over the same `tokenizers.Tokenizer` (a copy that splits at its
    special tokens, as transformers does with a rendered template)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(tok.to_str()), **special)


def hf_ids(hf: Any, template: str, messages: list[dict[str, str]], **kw: Any) -> list[int]:
    out = hf.apply_chat_template(messages, chat_template=(TEMPLATES / template).read_text(), tokenize=True,
                                 add_generation_prompt=True, **kw)
    return list(out["input_ids"] if not isinstance(out, list) else out)


@pytest.fixture(scope="module")
def bpe(tmp_path_factory: pytest.TempPathFactory) -> BPETokenizer:
    """A byte-level BPE with Llama 3's and ChatML's control tokens added as special tokens."""
    corpus = tmp_path_factory.mktemp("bpe") / "corpus.txt"
    corpus.write_text("\n".join(CORPUS), encoding="utf-8")
    tok = train_code_tokenizer([str(corpus)], vocab_size=400).tokenizer
    tok.add_special_tokens(LLAMA3 + CHATML)
    return BPETokenizer(tok)


def spec(template: str, bos: int | None = 1, eos: int | None = 2, **params: str) -> TokenizerSpec:
    return TokenizerSpec(bos_id=bos, eos_id=eos, chat=ChatSpec(template=template, params=params))


# ------------------------------------------------------------------------------ transformers
@pytest.mark.parametrize("case", sorted(CONVERSATIONS))
def test_llama_2_chat_equals_the_official_template(spm: SentencePieceTokenizer, case: str) -> None:
    hf = hf_tokenizer(spm.tokenizer, bos_token="<s>", eos_token="</s>")
    messages = CONVERSATIONS[case]
    ids = render_chat(spm, spec("llama-2"), messages)
    assert ids == hf_ids(hf, "llama-2-chat.jinja", messages)
    assert ids[0] == 1 and ids.count(2) == sum(m["role"] == "assistant" for m in messages)


@pytest.mark.parametrize("case", sorted(CONVERSATIONS))
def test_codellama_70b_instruct_equals_the_official_template(spm: SentencePieceTokenizer, case: str) -> None:
    hf = hf_tokenizer(spm.tokenizer, bos_token="<s>", eos_token="</s>", additional_special_tokens=["<step>"])
    messages = CONVERSATIONS[case]
    ids = render_chat(spm, spec("codellama-70b"), messages)
    assert ids == hf_ids(hf, "codellama-70b-instruct.jinja", messages)
    step = spm.piece_to_id("<step>")
    assert ids.count(step) == len(messages)
    assert stops(spm, spec("codellama-70b")) == ([step, 2], [])


@pytest.mark.parametrize("case", sorted(CONVERSATIONS))
def test_llama_3_1_equals_the_official_template(bpe: BPETokenizer, case: str) -> None:
    t = bpe.tokenizer
    hf = hf_tokenizer(t, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    messages = CONVERSATIONS[case]
    s = spec("llama-3.1", bos=t.token_to_id("<|begin_of_text|>"), eos=t.token_to_id("<|eot_id|>"))
    assert render_chat(bpe, s, messages) == hf_ids(hf, "llama-3.1-instruct.jinja", messages)
    dated = spec("llama-3.1", bos=t.token_to_id("<|begin_of_text|>"), date_string="3 Dec 2026")
    assert render_chat(bpe, dated, messages) == hf_ids(hf, "llama-3.1-instruct.jinja", messages,
                                                       date_string="3 Dec 2026")
    assert stops(bpe, s)[0] == [t.token_to_id(n) for n in ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>")]


@pytest.mark.parametrize("case", sorted(CONVERSATIONS))
def test_chatml_equals_qwen_2_5s_official_template(bpe: BPETokenizer, case: str) -> None:
    hf = hf_tokenizer(bpe.tokenizer, eos_token="<|im_end|>")
    messages = CONVERSATIONS[case]
    qwen = zoo.spec("qwen2.5-7b-instruct").tokenizer.chat.params
    s = spec("chatml", bos=None, eos=bpe.tokenizer.token_to_id("<|im_end|>"), **qwen)
    assert render_chat(bpe, s, messages) == hf_ids(hf, "qwen2.5-instruct.jinja", messages)
    without = render_chat(bpe, spec("chatml", bos=None), messages, add_generation_prompt=False)
    assert bpe.decode(without).startswith("<|im_start|>" + messages[0]["role"])


# ------------------------------------------------------------------------------ mistral-common
def _mistral(spm_path: Path, version: str, tmp_path: Path) -> Any:
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    path = tmp_path / f"tokenizer.model.{version}"
    path.write_bytes(spm_path.read_bytes())
    return MistralTokenizer.from_file(str(path))


def _request(messages: list[dict[str, str]]) -> Any:
    from mistral_common.protocol.instruct.request import ChatCompletionRequest

    return ChatCompletionRequest(messages=messages)


@pytest.mark.parametrize("version,template", [("v1", "mistral-v1"), ("v3", "mistral-v3")])
@pytest.mark.parametrize("case", sorted(CONVERSATIONS))
def test_mistral_equals_mistral_common(spm_path: Path, spm: SentencePieceTokenizer, tmp_path: Path, version: str,
                                       template: str, case: str) -> None:
    ref = _mistral(spm_path, version, tmp_path)
    messages = CONVERSATIONS[case]
    expected = ref.encode_chat_completion(_request(messages)).tokens
    assert render_chat(spm, spec(template), messages) == expected
    if version == "v3":
        assert spm.piece_to_id("[INST]") in expected


def test_tekken_is_pixtrals_layout() -> None:
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
    from tests.tekken_files import trained_ranks, write_tekken
    from zoo.runtime.tokenizers import TekkenTokenizer

    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = write_tekken(Path(d) / "tekken.json", trained_ranks(200))
        tok, ref = TekkenTokenizer.from_file(path), MistralTokenizer.from_file(str(path))
        for messages in CONVERSATIONS.values():
            expected = ref.encode_chat_completion(_request(messages)).tokens
            assert render_chat(tok, spec("mistral-tekken"), messages) == expected


# ------------------------------------------------------------------------------ catalog, errors
def test_every_chat_model_in_the_catalog_names_a_template() -> None:
    chat = {}
    for name in zoo.list():
        s = zoo.spec(name)
        if s.tokenizer is not None and s.tokenizer.chat is not None:
            load_template(s.tokenizer.chat.template)
            chat[name] = s.tokenizer.chat.template
        elif any(w in name for w in ("-chat", "-instruct")) and not name.startswith("phi-3"):  # phi-3: left
            pytest.fail(f"{name} is a chat/instruct model without tokenizer.chat")
    assert chat["llama-2-70b-chat"] == chat["codellama-34b-instruct"] == "llama-2"
    assert (chat["codellama-70b-instruct"], chat["mixtral-8x7b-instruct"], chat["mistral-7b-instruct"],
            chat["pixtral-12b"], chat["llama-3.1-8b-instruct"], chat["qwen2.5-7b-instruct"]) == (
        "codellama-70b", "mistral-v1", "mistral-v3", "mistral-tekken", "llama-3.1", "chatml")
    assert set(chat.values()) <= set(template_names())


BAD = {
    "roles out of order": ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "expected a assistant"),
    "assistant first": ([{"role": "assistant", "content": "a"}], "expected a user"),
    "unknown role": ([{"role": "robot", "content": "a"}], "role must be one of"),
    "non-string content": ([{"role": "user", "content": 3}], "content must be a string"),
    "late system": ([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}], "may only come first"),
    "not a list": ("hello", "non-empty list"),
    "empty": ([], "non-empty list"),
    "not a dict": (["hello"], "expected a dict"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_conversations_are_usage_errors(spm: SentencePieceTokenizer, case: str) -> None:
    messages, match = BAD[case]
    with pytest.raises(UsageError, match=match):
        render_chat(spm, spec("llama-2"), messages)


def test_unknown_template_and_parameter_and_missing_token(spm: SentencePieceTokenizer) -> None:
    msg = [{"role": "user", "content": "hi"}]
    with pytest.raises(UsageError, match="unknown chat template 'llama-9'.*chatml"):
        render_chat(spm, spec("llama-9"), msg)
    with pytest.raises(UsageError, match="not parameters of chat template 'llama-2'"):
        render_chat(spm, spec("llama-2", colour="red"), msg)
    with pytest.raises(UsageError, match="no '<\\|im_start\\|>' token"):
        render_chat(spm, spec("chatml"), msg)
    with pytest.raises(UsageError, match="tokenizer: {chat: {template: NAME}}"):
        render_chat(spm, TokenizerSpec(), msg)
