"""Text in, text out: tokenizer + model + stop tokens, Code Llama infilling, and `zoo generate`
on a saved checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import zoo
from tests.runtime.test_tokenizers import _train
from zoo.runtime.tokenizers import SentencePieceTokenizer
from zoo.runtime.tokenizers.infill import InfillTokens, build_infill_prompt

TINY = ["arch.dim=64", "arch.n_layers=2", "arch.ffn.hidden_dim=96", "arch.max_seq_len=256"]


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory) -> SentencePieceTokenizer:
    folder = tmp_path_factory.mktemp("spm")
    path = _train(folder, "code", user_defined_symbols=["\u2581<PRE>", "\u2581<SUF>", "\u2581<MID>", "\u2581<EOT>"])
    return SentencePieceTokenizer.from_file(path)


def _codellama(tok: SentencePieceTokenizer, eot: int | None = None):  # type: ignore[no-untyped-def]
    ids = InfillTokens.from_tokenizer(tok)
    ov = TINY + [f"arch.vocab_size={tok.vocab_size}", f"tokenizer.infill.prefix_id={ids.prefix_id}",
                 f"tokenizer.infill.suffix_id={ids.suffix_id}", f"tokenizer.infill.middle_id={ids.middle_id}",
                 f"tokenizer.infill.eot_id={eot if eot is not None else ids.eot_id}"]
    m = zoo.build("codellama-7b", ov, seed=4, tokenizer=tok).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:
                p.mul_(6.0)
    return m


def test_infill_stops_at_eot_and_strips_it(tok: SentencePieceTokenizer) -> None:
    m = _codellama(tok)
    prompt = build_infill_prompt(tok, "def add(a, b):\n    ", "\n    return c\n", ids=InfillTokens.from_tokenizer(tok))
    free = m.generate([prompt], max_new_tokens=12)[0]
    # make the 4th generated token the model's <EOT>: generation must stop right there
    eot = free[3]
    if eot in free[:3]:
        pytest.skip("degenerate random model repeats its first tokens")
    m = _codellama(tok, eot=eot)
    text = m.infill("def add(a, b):\n    ", "\n    return c\n", max_new_tokens=12)
    assert text == tok.decode(free[:3])
    assert m.stop_ids()[-1] == eot


def test_infill_refuses_models_without_infilling(tok: SentencePieceTokenizer) -> None:
    m = zoo.build("codellama-7b-python", TINY + [f"arch.vocab_size={tok.vocab_size}"], tokenizer=tok)
    with pytest.raises(ValueError, match="not trained for infilling"):
        m.infill("a", "b")


def test_generate_text_then_save_load_and_cli(tok: SentencePieceTokenizer, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    m = _codellama(tok)
    text = m.generate_text("def fib(n):", max_new_tokens=10)
    assert isinstance(text, str) and text
    folder = m.save(tmp_path / "ckpt")
    assert (folder / "zoo.yaml").is_file() and (folder / "tokenizer.model").is_file()
    loaded = zoo.load(folder)
    assert loaded.generate_text("def fib(n):", max_new_tokens=10) == text
    from zoo.cli import main

    assert main(["generate", str(folder), "def fib(n):", "--max-new-tokens", "10"]) == 0
    assert capsys.readouterr().out.strip() == ("def fib(n):" + text).strip()
