"""The code tokenizer (byte-level BPE with a code pre-tokenization regex): exact round trips,
indentation and digit handling, special ids, persistence and typed errors."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models

from zoo.runtime.tokenizers import BPETokenizer, TokenizerError
from zoo.runtime.tokenizers.bpe import train_code_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])
FILES = sorted(STDLIB.glob("*.py"))  # the top level of the interpreter's own standard library


@pytest.fixture(scope="module")
def tok() -> BPETokenizer:
    assert len(FILES) >= 40, f"expected Python sources in {STDLIB}"
    return train_code_tokenizer(FILES[:30], vocab_size=1024)


TEXTS = [
    "def f(x):\n    return x + 1\n",
    "class A:\r\n\tdef g(self):\r\n\t\treturn 'é'\r\n",  # CRLF and tabs
    "naïve café — 日本語のテキスト 🙂🚀 Ωμέγα",
    "\x00\x01\x7f\u200b\ufeff zero-width and control characters",
    "trailing spaces   \n\n\n   \t \n",
    "<s> </s> <pad> look like specials but are text",
    "x = 1234567890.0625e-12; y = 0xDEADBEEF",
    "",
    " ",
    "    ",
    "¡" * 50 + "a" * 300,
]


def test_round_trip_is_byte_exact(tok: BPETokenizer) -> None:
    for text in TEXTS + [f.read_text(encoding="utf-8") for f in FILES[30:40]]:
        assert tok.decode(tok.encode(text, bos=True, eos=True)) == text
    random_bytes = bytes(range(256)).decode("latin-1") * 3
    assert tok.decode(tok.encode(random_bytes)) == random_bytes
    assert tok.decode_batch(tok.encode_batch(TEXTS)) == TEXTS


def test_newline_plus_indentation_is_one_token(tok: BPETokenizer) -> None:
    ids = tok.encode("if x:\n    y = 1\n        return y\n", bos=False)
    pieces = [tok.decode([i]) for i in ids]
    assert "\n    " in pieces and "\n        " in pieces
    assert "return" in pieces  # the keyword stays whole after the indentation token


def test_pre_tokenization_splits_digits_and_punctuation(tok: BPETokenizer) -> None:
    pre = [p for p, _ in tok.tokenizer.pre_tokenizer.pre_tokenize_str("x=1234567 foo):\n")]
    assert pre[1:6] == ["=", "123", "456", "7", "Ġfoo"] and pre[6] == "):" and pre[7] == "Ċ"
    for i in tok.encode("n = 98765432109876543210", bos=False):
        piece = tok.decode([i])
        if piece.strip().isdigit():
            assert len(piece.strip()) <= 3


def test_special_tokens(tok: BPETokenizer) -> None:
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.unk_id) == (0, 1, 2, -1)
    assert [tok.id_to_piece(i) for i in range(3)] == ["<s>", "</s>", "<pad>"]
    ids = tok.encode("hi", bos=True, eos=True)
    assert ids[0] == 0 and ids[-1] == 1 and 0 not in ids[1:-1]
    assert not {0, 1, 2} & set(tok.encode("<s></s><pad>", bos=False))  # text never becomes a control id
    assert tok.decode([0, 2] + tok.encode("a", bos=False) + [1]) == "a"
    assert tok.tokenizer.encode("a").ids[0] == 0  # the tokenizer.json alone adds <s> too (transformers)
    assert tok.vocab_size == len(tok) == 1024


def test_save_and_load_are_equal(tok: BPETokenizer, tmp_path: Path) -> None:
    path = tok.save(tmp_path / "t")
    assert path == tmp_path / "t" / "tokenizer.json"
    for source in (path, tmp_path / "t"):
        again = BPETokenizer.from_file(source)
        assert again == tok and again.vocab_size == tok.vocab_size
        assert [again.encode(t) for t in TEXTS] == [tok.encode(t) for t in TEXTS]
        assert again.decode(again.encode(TEXTS[2])) == TEXTS[2]
    out = tmp_path / "trained"
    trained = train_code_tokenizer(FILES[:3], vocab_size=300, out=out, texts=["extra text"])
    assert (out / "tokenizer.json").is_file() and BPETokenizer.from_file(out) == trained


def test_compresses_held_out_python(tok: BPETokenizer) -> None:
    text = "".join(f.read_text(encoding="utf-8") for f in FILES[30:40])
    assert len(text.encode()) / len(tok.encode(text, bos=False)) > 2.0


def test_errors_are_typed(tok: BPETokenizer, tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="no such tokenizer file"):
        BPETokenizer.from_file(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="not a valid tokenizer.json"):
        BPETokenizer.from_file(tmp_path / "bad.json")
    Tokenizer(models.WordLevel({"a": 0}, unk_token="a")).save(str(tmp_path / "wl.json"))
    with pytest.raises(TokenizerError, match="not a byte-level BPE"):
        BPETokenizer.from_file(tmp_path / "wl.json")
    with pytest.raises(TokenizerError, match="vocab_size"):
        train_code_tokenizer(FILES[:1], vocab_size=100)
    with pytest.raises(TokenizerError, match="lone surrogates"):
        tok.encode("a\ud800b")
    with pytest.raises(IndexError):
        tok.decode([tok.vocab_size])
