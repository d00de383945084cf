"""Tool use (zoo/tools/, issue #19 item 6): the ids zoo renders for a conversation with tools,
tool calls and tool results equal the references' — mistral-common's v3 encoding
(`ChatCompletionRequest(tools=...)`, MistralTokenizer on the same SentencePiece model) and
transformers' `apply_chat_template(tools=...)` with the official Llama 3.1 Instruct template
(tests/data/chat_templates/llama-3.1-instruct.jinja) — and the tool loop runs end to end with a
scripted stand-in model whose replies are fixed: its calls are parsed, run (the Python tool
through zoo.sandbox), their results appended, and each next prompt again equals the reference's
rendering of the transcript."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, Optional

import pytest
from tokenizers import Tokenizer
from zoo.compiler.errors import UsageError
from zoo.compiler.schema import ChatSpec, TokenizerSpec
from zoo.runtime.tokenizers import (
    BPETokenizer,
    SentencePieceTokenizer,
    train_code_tokenizer,
)

import zoo
import zoo.tools
from zoo.chat import render_chat
from zoo.tools import ToolCallError, ToolStepLimit, function_schema

LLAMA_TEMPLATE = Path(__file__).parents[1] / "data" / "chat_templates" / "llama-3.1-instruct.jinja"
MISTRAL_CONTROL = ["[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]",
                   "[/TOOL_RESULTS]"]
LLAMA3 = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
          "<|eom_id|>", "<|python_tag|>"]
CORPUS = ['{"name": "python", "arguments": {"code": "print(6 * 7)"}}', "def add(a, b):\n    return a + b",
          "What is the weather in Paris? It is 21 degrees.", "Ünïcödé text: 日本語 🙂", "The answer is 42."] * 20


def get_weather(city: str, unit: Literal["C", "F"] = "C") -> str:
    """The current weather in a city.

    Args:
        city: the city's name, e.g. Paris
        unit: degrees Celsius (C) or Fahrenheit (F)
    """
    return f"21 {unit} in {city}"


def add(a: int, b: int, note: Optional[str] = None) -> int:
    """Add two integers.

    Args:
        a: the first
        b: the second
        note: anything

    Returns:
        their sum
    """
    return a + b


SCHEMAS = [function_schema(get_weather), zoo.tools.python.schema]


def call(id_: str, name: str, **args: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": id_, "type": "function", "function": {"name": name, "arguments": args}}]}


def result(id_: str, name: str, content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": id_, "name": name, "content": content}


CONVERSATIONS = {
    "tools, first turn": [{"role": "system", "content": "Use tools when needed."},
                          {"role": "user", "content": "What is the weather in Paris?"}],
    "call and result": [{"role": "user", "content": " What is the weather in Paris? "},
                        call("a1B2c3D4e", "get_weather", city="Paris"),
                        result("a1B2c3D4e", "get_weather", "21 C in Paris")],
    "result, answer, next turn": [{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": "Compute 6 * 7 with python"},
                                  call("Zz9Yy8Xx7", "python", code="print(6 * 7)"),
                                  result("Zz9Yy8Xx7", "python", "42\n"),
                                  {"role": "assistant", "content": "It is 42."},
                                  {"role": "user", "content": "And the weather in 日本? 🙂"}],
    "json result": [{"role": "user", "content": "weather?"},
                    call("q1w2e3r4t", "get_weather", city="Ünïcödé", unit="F"),
                    result("q1w2e3r4t", "get_weather", '{"temp": 70, "sky": "clear"}')],
}


# ------------------------------------------------------------------------------ tokenizers
@pytest.fixture(scope="module")
def spm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import sentencepiece as spm

    root = tmp_path_factory.mktemp("spm")
    (root / "corpus.txt").write_text("\n".join(CORPUS), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(root / "corpus.txt"), model_prefix=str(root / "tokenizer"),
                                   model_type="bpe", vocab_size=450, hard_vocab_limit=False, byte_fallback=True,
                                   remove_extra_whitespaces=False, control_symbols=MISTRAL_CONTROL, minloglevel=2,
                                   num_threads=1, character_coverage=1.0, normalization_rule_name="identity")
    return root / "tokenizer.model"


@pytest.fixture(scope="module")
def spm(spm_path: Path) -> SentencePieceTokenizer:
    return SentencePieceTokenizer.from_file(spm_path)


@pytest.fixture(scope="module")
def mistral(spm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    path = tmp_path_factory.mktemp("mc") / "tokenizer.model.v3"
    path.write_bytes(spm_path.read_bytes())
    return MistralTokenizer.from_file(str(path))


def mistral_ids(ref: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[int]:
    from mistral_common.protocol.instruct.request import ChatCompletionRequest

    keep = ("name", "description", "parameters")  # mistral-common's Function has no "return"
    tools = [{"type": "function", "function": {k: v for k, v in t["function"].items() if k in keep}} for t in tools]
    return list(ref.encode_chat_completion(ChatCompletionRequest(messages=copy.deepcopy(messages), tools=tools)).tokens)


@pytest.fixture(scope="module")
def bpe(tmp_path_factory: pytest.TempPathFactory) -> BPETokenizer:
    corpus = tmp_path_factory.mktemp("bpe") / "corpus.txt"
    corpus.write_text("\n".join(CORPUS), encoding="utf-8")
    tok = train_code_tokenizer([str(corpus)], vocab_size=400).tokenizer
    tok.add_special_tokens(LLAMA3)
    return BPETokenizer(tok)


def llama_ids(bpe: BPETokenizer, messages: list[dict[str, Any]], tools: list[Any], **kw: Any) -> list[int]:
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(bpe.tokenizer.to_str()),
                                 bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    out = hf.apply_chat_template(copy.deepcopy(messages), tools=tools, chat_template=LLAMA_TEMPLATE.read_text(),
                                 tokenize=True, add_generation_prompt=True, **kw)
    return list(out["input_ids"] if not isinstance(out, list) else out)


def mistral_spec() -> TokenizerSpec:
    return TokenizerSpec(bos_id=1, eos_id=2, chat=ChatSpec(template="mistral-v3"))


def llama_spec(bpe: BPETokenizer) -> TokenizerSpec:
    t = bpe.tokenizer
    return TokenizerSpec(bos_id=t.token_to_id("<|begin_of_text|>"), eos_id=t.token_to_id("<|eot_id|>"),
                         chat=ChatSpec(template="llama-3.1"))


# ------------------------------------------------------------------------------ rendering
def test_schemas_from_functions_equal_transformers() -> None:
    from transformers.utils import get_json_schema

    for fn in (get_weather, add, zoo.tools.python.fn):
        assert function_schema(fn) == get_json_schema(fn)


@pytest.mark.parametrize("case", sorted(CONVERSATIONS))
def test_mistral_v3_tools_equal_mistral_common(spm: SentencePieceTokenizer, mistral: Any, case: str) -> None:
    messages = CONVERSATIONS[case]
    ids = render_chat(spm, mistral_spec(), messages, tools=SCHEMAS)
    assert ids == mistral_ids(mistral, messages, SCHEMAS)
    assert spm.piece_to_id("[AVAILABLE_TOOLS]") in ids
    assert ids.count(spm.piece_to_id("[TOOL_CALLS]")) == sum("tool_calls" in m for m in messages)
    # functions and Tools render as their schemas
    assert render_chat(spm, mistral_spec(), messages, tools=[get_weather, zoo.tools.python]) == ids


@pytest.mark.parametrize("case", sorted(CONVERSATIONS))
def test_llama_3_1_tools_equal_the_official_template(bpe: BPETokenizer, case: str) -> None:
    messages = CONVERSATIONS[case]
    ids = render_chat(bpe, llama_spec(bpe), messages, tools=SCHEMAS)
    assert ids == llama_ids(bpe, messages, SCHEMAS)
    # transformers derives the schemas of plain functions itself
    assert render_chat(bpe, llama_spec(bpe), messages, tools=[get_weather, add]) == llama_ids(bpe, messages,
                                                                                               [get_weather, add])
    assert "Environment: ipython" in bpe.decode(ids)


def test_tool_messages_without_tools_and_plain_chats_unchanged(bpe: BPETokenizer, spm: SentencePieceTokenizer,
                                                               mistral: Any) -> None:
    messages = CONVERSATIONS["call and result"]
    assert render_chat(bpe, llama_spec(bpe), messages) == llama_ids(bpe, messages, None)
    plain = [{"role": "user", "content": "hello"}]
    assert render_chat(spm, mistral_spec(), plain, tools=[]) == mistral_ids(mistral, plain, [])


BAD = {
    "tool without call": ([{"role": "user", "content": "a"}, result("x", "f", "1")], "must follow an assistant"),
    "calls and content": ([{"role": "user", "content": "a"}, {**call("x", "f"), "content": "hi"}], "no content"),
    "bad arguments": ([{"role": "user", "content": "a"},
                       {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{x"}}]}],
                      "not JSON"),
    "no name": ([{"role": "user", "content": "a"}, {"role": "assistant", "tool_calls": [{"function": {}}]}],
                "expected"),
    "roles": ([{"role": "user", "content": "a"}, call("x", "f"), result("x", "f", "1"),
               {"role": "user", "content": "b"}], "expected a assistant"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_tool_conversations_are_usage_errors(spm: SentencePieceTokenizer, case: str) -> None:
    messages, match = BAD[case]
    with pytest.raises(UsageError, match=match):
        render_chat(spm, mistral_spec(), messages, tools=SCHEMAS)


def test_templates_without_a_tool_format_and_bad_tools(spm: SentencePieceTokenizer) -> None:
    spec = TokenizerSpec(bos_id=1, eos_id=2, chat=ChatSpec(template="llama-2"))
    with pytest.raises(UsageError, match="'llama-2' has no tool-call format"):
        render_chat(spm, spec, [{"role": "user", "content": "a"}], tools=SCHEMAS)
    with pytest.raises(UsageError, match="a tool schema is"):
        render_chat(spm, mistral_spec(), [{"role": "user", "content": "a"}], tools=[{"nope": 1}])
    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    with pytest.raises(UsageError, match="no type hint"):
        function_schema(untyped)
    with pytest.raises(UsageError, match="no user message"):
        render_chat(spm, mistral_spec(), [{"role": "system", "content": "a"}], tools=SCHEMAS)


# ------------------------------------------------------------------------------ the loop
class Scripted:
    """A stand-in model with the interface the tool loop uses (spec, _need_tokenizer, generate):
    its replies are fixed ids; it records each prompt it was given."""

    def __init__(self, tok: Any, spec: TokenizerSpec, replies: list[list[int]]) -> None:
        self.tokenizer, self.replies, self.prompts = tok, list(replies), []
        self.spec = SimpleNamespace(name="scripted", tokenizer=spec)

    def _need_tokenizer(self) -> Any:
        return self.tokenizer

    def generate(self, prompts: list[list[int]], max_new_tokens: int, stop_tokens: list[int], **kw: Any) -> list[list[int]]:
        self.prompts.append(list(prompts[0]))
        return [self.replies.pop(0)[:max_new_tokens]]


def mistral_reply(spm: SentencePieceTokenizer, text: str, calls: bool = False) -> list[int]:
    return ([spm.piece_to_id("[TOOL_CALLS]")] if calls else []) + spm.encode(text, bos=False) + [2]


def test_mistral_loop_runs_python_in_the_sandbox(spm: SentencePieceTokenizer, mistral: Any) -> None:
    code = 'print(6 * 7)'
    model = Scripted(spm, mistral_spec(), [
        mistral_reply(spm, json.dumps([{"name": "python", "arguments": {"code": code}}]), calls=True),
        mistral_reply(spm, "The answer is 42.")])
    question = [{"role": "user", "content": "Compute 6 * 7 with python"}]
    out = zoo.tools.run(model, question, tools=[zoo.tools.python])
    assert out.answer == "The answer is 42." and out.steps == 1
    call_msg, tool_msg = out.messages[1], out.messages[2]
    call_id = call_msg["tool_calls"][0]["id"]
    assert len(call_id) == 9 and call_id.isalnum()
    assert tool_msg == {"role": "tool", "tool_call_id": call_id, "name": "python", "content": "42\n"}
    schemas = [zoo.tools.python.schema]
    assert model.prompts[0] == mistral_ids(mistral, question, schemas)
    assert model.prompts[1] == mistral_ids(mistral, out.messages[:3], schemas)


def test_llama_loop_with_functions(bpe: BPETokenizer) -> None:
    t = bpe.tokenizer
    eom, eot, tag = (t.token_to_id(n) for n in ("<|eom_id|>", "<|eot_id|>", "<|python_tag|>"))
    model = Scripted(bpe, llama_spec(bpe), [
        [tag] + bpe.encode('{"name": "add", "parameters": {"a": 2, "b": 3}}', bos=False) + [eom],
        bpe.encode(' {"name": "get_weather", "parameters": {"city": "Paris"}}', bos=False) + [eot],
        bpe.encode("It is 5, and 21 C in Paris.", bos=False) + [eot]])
    question = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2 + 3? Weather in Paris?"}]
    out = zoo.tools.run(model, question, tools=[add, get_weather])
    assert out.answer == "It is 5, and 21 C in Paris." and out.steps == 2
    assert [m.get("content") for m in out.messages if m["role"] == "tool"] == ["5", "21 C in Paris"]
    for k, prompt in enumerate(model.prompts):  # each prompt: the official template over the transcript so far
        assert prompt == llama_ids(bpe, out.messages[:2 + 2 * k], [add, get_weather])


def test_step_limit_and_tool_failures(spm: SentencePieceTokenizer) -> None:
    def boom(x: int) -> str:
        """Fails.

        Args:
            x: anything
        """
        raise RuntimeError("it broke")

    again = mistral_reply(spm, '[{"name": "boom", "arguments": {"x": 1}}, {"name": "nope", "arguments": {}}]',
                          calls=True)
    model = Scripted(spm, mistral_spec(), [again] * 3)
    with pytest.raises(ToolStepLimit, match="still calling tools after 2 round") as e:
        zoo.tools.run(model, [{"role": "user", "content": "go"}], tools=[boom], max_steps=2)
    assert len(model.prompts) == 3
    results = [m["content"] for m in e.value.messages if m["role"] == "tool"]
    assert results[:2] == ["error: RuntimeError: it broke", "error: no tool named 'nope'; the tools are: boom"]
    garbled = Scripted(spm, mistral_spec(), [mistral_reply(spm, "[{not json", calls=True)])
    with pytest.raises(ToolCallError, match="not JSON"):
        zoo.tools.run(garbled, [{"role": "user", "content": "go"}], tools=[boom])
    with pytest.raises(UsageError, match="max_steps"):
        zoo.tools.run(garbled, [{"role": "user", "content": "go"}], tools=[boom], max_steps=-1)


def test_m_chat_with_tools_on_a_tiny_model(spm_path: Path, spm: SentencePieceTokenizer) -> None:
    m = zoo.build("mistral-7b-instruct", ["arch.dim=32", "arch.n_layers=1", "arch.attention.n_heads=4",
                                          "arch.attention.n_kv_heads=2", "arch.ffn.hidden_dim=64",
                                          "arch.vocab_size=512"], init="random", seed=0)
    m.tokenizer = spm
    scripted = Scripted(spm, m.spec.tokenizer, [
        mistral_reply(spm, json.dumps([{"name": "python", "arguments": {"code": "print(sum(range(10)))"}}]),
                      calls=True),
        mistral_reply(spm, "45")])
    m.generate = scripted.generate  # the real model's own text and tool path, fixed replies
    assert m.chat([{"role": "user", "content": "sum of 0..9?"}], tools=[zoo.tools.python]) == "45"
    assert '{"content": 45, "call_id": ' in spm.decode(scripted.prompts[1])  # the sandbox printed 45
    m.__dict__.pop("generate")
    reply = m.chat([{"role": "user", "content": "hi"}], max_new_tokens=4)  # no tools: the plain path
    assert isinstance(reply, str)


def test_a_saved_llama_3_1_folder_renders_tools_in_transformers(bpe: BPETokenizer, tmp_path: Path) -> None:
    """zoo's tokenizer_config.json carries the official template: transformers' rendering of a
    tool conversation from the saved folder equals zoo's."""
    from transformers import AutoTokenizer

    t = bpe.tokenizer
    m = zoo.build("llama-3.1-8b-instruct", ["arch.dim=32", "arch.n_layers=1", "arch.attention.n_heads=4",
                                            "arch.attention.n_kv_heads=2", "arch.ffn.hidden_dim=64",
                                            "arch.vocab_size=512", f"tokenizer.bos_id={t.token_to_id('<|begin_of_text|>')}",
                                            f"tokenizer.eos_id={t.token_to_id('<|eot_id|>')}"])
    m.tokenizer = bpe
    hf = AutoTokenizer.from_pretrained(str(m.save(tmp_path / "llama")))
    for case, messages in sorted(CONVERSATIONS.items()):
        out = hf.apply_chat_template(copy.deepcopy(messages), tools=SCHEMAS, tokenize=True, add_generation_prompt=True)
        ids = list(out["input_ids"] if not isinstance(out, list) else out)
        assert ids == render_chat(bpe, m.spec.tokenizer, messages, tools=SCHEMAS), case
