"""Streaming text: token ids to text pieces (multi-byte characters split across tokens,
SentencePiece's leading spaces), stop strings across pieces, and `m.stream` equal to
`m.generate_text` while stopping as soon as it can."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import zoo
from tests.runtime.test_tokenizers import _train
from zoo.compiler.errors import UsageError
from zoo.runtime.tokenizers import SentencePieceTokenizer
from zoo.textstream import IncrementalDecoder, StopMatcher, decode_continuation, text_pieces

TEXT = "héllo wörld, naïve café: 日本語のテキスト 🙂🚀 def f(x):\n    return x  # ✓ ÆØÅ"
TINY = ["arch.dim=64", "arch.n_layers=2", "arch.ffn.hidden_dim=96", "arch.max_seq_len=256"]


@pytest.fixture(scope="module")
def spm(tmp_path_factory: pytest.TempPathFactory) -> SentencePieceTokenizer:
    return SentencePieceTokenizer.from_file(_train(tmp_path_factory.mktemp("spm"), "code"))


@pytest.fixture(scope="module")
def code() -> torch.nn.Module:
    return zoo.load("tiny-code").eval()


def _pieces(tok, ids, context=()) -> list[str]:  # noqa: ANN001
    dec = IncrementalDecoder(tok, context)
    return [dec.push(t) for t in ids] + [dec.flush()]


@pytest.mark.parametrize("which", ["sentencepiece", "bpe"])
def test_pieces_join_to_the_decoded_text_and_never_split_a_character(which: str, spm, code) -> None:  # noqa: ANN001
    tok = spm if which == "sentencepiece" else code.tokenizer
    ids = tok.encode(TEXT, bos=False)
    pieces = _pieces(tok, ids)
    assert "".join(pieces) == tok.decode(ids)
    assert not any("\ufffd" in p for p in pieces)  # a character waits for all its bytes
    singles = [tok.decode([t]) for t in ids]
    assert any("\ufffd" in s for s in singles), "the text should split some character across tokens"


def test_sentencepiece_keeps_the_space_of_a_continuation(spm: SentencePieceTokenizer) -> None:
    prompt, reply = spm.encode("def fib(n):", bos=False), spm.encode("return fib(n - 1) 🙂 done", bos=False)  # "▁return …"
    whole = spm.decode(prompt + reply)
    assert whole.startswith(spm.decode(prompt))
    assert decode_continuation(spm, prompt, reply) == whole[len(spm.decode(prompt)):]
    assert decode_continuation(spm, prompt, reply).startswith(" return")
    assert not spm.decode(reply).startswith(" ")  # what decoding the reply alone loses


@pytest.mark.parametrize("stops, pushes, expect", [
    (["\n\n"], ["a\n", "\nb"], ("a", True)),
    (["\n\n"], ["a\n", "b\n", "c"], ("a\nb\nc", False)),
    (["END"], ["xE", "N", "Dy"], ("x", True)),
    (["END", "STOP"], ["abc S", "TO", "P END"], ("abc ", True)),
    (["ab", "b"], ["xab"], ("x", True)),  # the earliest match wins
    (["aab"], ["a", "a", "a", "b"], ("a", True)),
    (["<|end|>"], ["<|e", "nd", "ing"], ("<|ending", False)),
    ([], ["any", "thing"], ("anything", False)),
])
def test_stop_strings_across_pieces(stops: list[str], pushes: list[str], expect: tuple[str, bool]) -> None:
    m = StopMatcher(stops)
    out, hit = "", False
    for p in pushes:
        piece, hit = m.push(p)
        out += piece
        if hit:
            break
    if not hit:
        out += m.flush()
    assert (out, hit) == expect


def test_a_stop_matcher_holds_back_only_a_possible_prefix() -> None:
    m = StopMatcher(["\n\n", "###"])
    assert m.push("abc\n") == ("abc", False)  # "\n" may begin "\n\n"
    assert m.push("x#") == ("\nx", False)
    assert m.push("y") == ("#y", False)
    assert m.flush() == ""
    assert m.push("##") == ("", False) and m.push("#tail") == ("", True) and m.push("more") == ("", True)


@pytest.mark.parametrize("bad", ["", [""], [1], 3])
def test_bad_stop_strings_are_usage_errors(bad: object) -> None:
    with pytest.raises(UsageError, match="stop"):
        StopMatcher(bad)  # type: ignore[arg-type]


def test_text_pieces_stop_at_a_stop_id_and_close_the_source(code) -> None:  # noqa: ANN001
    tok = code.tokenizer
    ids = tok.encode("one two three", bos=False)
    closed = []

    def source():  # noqa: ANN202
        try:
            yield from ids + [999, *ids]
        finally:
            closed.append(True)

    assert "".join(text_pieces(tok, source(), stop_ids=[999])) == "one two three" and closed
    assert "".join(text_pieces(tok, iter(ids), stop=" thr")) == "one two"


def test_stream_equals_generate_text(code) -> None:  # noqa: ANN001
    for kw in ({}, {"temperature": 0.9, "top_k": 40, "seed": 5}, {"temperature": 1.0, "top_p": 0.9, "seed": 1}):
        pieces = list(code.stream("def fib(n):", 40, **kw))
        assert len(pieces) > 5 and all(pieces)
        assert "".join(pieces) == code.generate_text("def fib(n):", 40, **kw)


def test_stream_stops_at_a_stop_string_without_decoding_further(code, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    full = code.generate_text("def fib(n):", 60)
    stop = full[10:14]
    cut = full[:full.index(stop)]
    assert code.generate_text("def fib(n):", 60, stop=[stop, "never there"]) == cut
    forwards = []
    monkeypatch.setattr(type(code), "forward", lambda self, *a, **k: forwards.append(1) or
                        type(code).__mro__[2].forward(self, *a, **k))
    assert "".join(code.stream("def fib(n):", 60, stop=[stop])) == cut
    assert len(forwards) < 30  # stopped early, not 60 steps then cut


def test_stream_with_sentencepiece_keeps_the_first_space(spm: SentencePieceTokenizer) -> None:
    m = zoo.build("codellama-7b-python", TINY + [f"arch.vocab_size={spm.vocab_size}"], seed=3, tokenizer=spm).eval()
    ids = [spm.bos_id] + spm.encode("def fib(n):", bos=False)
    new = m.generate(ids, max_new_tokens=12)[0]
    expect = spm.decode(ids[1:] + new)[len(spm.decode(ids[1:])):]
    assert "".join(m.stream("def fib(n):", 12)) == expect == m.generate_text("def fib(n):", 12)


def test_stream_checks_its_arguments_before_the_first_piece(code) -> None:  # noqa: ANN001
    for kw, msg in (({"top_p": 2.0}, "top_p"), ({"temperature": -1.0}, "temperature"), ({"stop": [""]}, "stop"),
                    ({"max_new_tokens": 5000}, "past the model's context")):
        with pytest.raises(UsageError, match=msg):
            code.stream("x", **kw)
    with pytest.raises(UsageError, match="one prompt"):
        code.stream(["a", "b"])


def test_stream_without_a_tokenizer_says_what_to_do(tmp_path: Path) -> None:
    m = zoo.build("llama-2-7b", ["arch.dim=64", "arch.n_layers=1", "arch.attention.n_heads=4",
                                 "arch.ffn.hidden_dim=96", "arch.vocab_size=128"])
    with pytest.raises(UsageError, match="no tokenizer"):
        m.stream("hi")
