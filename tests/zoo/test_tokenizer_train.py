"""`zoo tokenizer train`: the three pre-tokenization regexes split what they say they split
(digits, indentation, contractions), specials come first, extra specials are added, the file
is written where --out says, and every tokenizer round-trips text exactly."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import pytest
from tokenizers import Regex, pre_tokenizers
from zoo.runtime.errors import UsageError
from zoo.runtime.tokenizers import BPETokenizer

from zoo.cli.main import main as cli
from zoo.tokenizer.train import REGEXES, corpus_files, train_tokenizer

FILES = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:12]
CODE = "def f(x):\n    if x:\n        return 12345  # it's\n    return f'spam'\n"


def pieces(regex: str, text: str) -> list[str]:
    split = pre_tokenizers.Split(Regex(REGEXES[regex]), behavior="isolated")
    return [p for p, _ in split.pre_tokenize_str(text)]


def test_regexes_split_as_documented():
    assert "123" in pieces("gpt4", CODE) and "45" in pieces("gpt4", CODE)  # digits in threes
    assert [p for p in pieces("llama", CODE) if p.strip().isdigit()] == [" 1", "2", "3", "4", "5"]  # one by one
    assert "\n        " in pieces("code", CODE)  # line break + next indentation: one piece
    assert "\n        " not in pieces("gpt4", CODE)
    assert "pam" in pieces("gpt4", CODE)  # the contraction rule cuts f'spam' into f, 's, pam
    assert "'spam" in pieces("code", CODE) and "spam" in pieces("llama", CODE)
    for regex in REGEXES:  # the pieces cover the text
        assert "".join(pieces(regex, CODE)) == CODE


@pytest.mark.parametrize("regex", sorted(REGEXES))
def test_train_round_trips_with_specials_first(regex):
    tok = train_tokenizer(FILES, 400, regex, specials=["<fim_prefix>"])
    assert tok.vocab_size == 401 and [tok.id_to_piece(i) for i in range(3)] == ["<s>", "</s>", "<pad>"]
    assert tok.id_to_piece(400) == "<fim_prefix>"
    assert tok.decode(tok.encode(CODE + "é→🙂<s>", bos=False)) == CODE + "é→🙂<s>"
    assert 400 not in tok.encode("<fim_prefix>", bos=False)  # typed text is text


def test_cli_writes_file_or_folder(tmp_path, capsys):
    for f in FILES[:5]:
        (tmp_path / f.name).write_text(f.read_text(encoding="utf-8", errors="replace"))
    (tmp_path / "notes.txt").write_text("not python")
    assert cli(["tokenizer", "train", str(tmp_path), "--vocab", "300", "--regex", "gpt4", "--out",
                str(tmp_path / "out" / "tok.json")]) == 0
    assert "trained on 5 files" in capsys.readouterr().out
    tok = BPETokenizer.from_file(tmp_path / "out" / "tok.json")
    assert tok.vocab_size == 300
    assert json.loads((tmp_path / "out" / "tok.json").read_text())["model"]["type"] == "BPE"
    assert cli(["tokenizer", "train", str(tmp_path), "--vocab", "300", "--out", str(tmp_path / "dir")]) == 0
    assert (tmp_path / "dir" / "tokenizer.json").is_file()
    assert cli(["tokenizer", "train", str(tmp_path), "--vocab", "100", "--out", str(tmp_path / "x.json")]) == 2
    assert "--vocab must be at least 259" in capsys.readouterr().err


def test_errors(tmp_path):
    with pytest.raises(UsageError, match="no .py files"):
        corpus_files(tmp_path)
    with pytest.raises(UsageError, match="unknown regex"):
        train_tokenizer(FILES, 300, "gpt2")
