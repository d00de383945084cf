"""Tekken (Pixtral, Mistral NeMo): ids and decoding identical to mistral-common's Tekkenizer,
on a file the test writes and on the Pixtral file mistral-common ships; persistence, the
``kind: tekken`` loader and typed errors."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

import mistral_common
import pytest
from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy
from mistral_common.tokens.tokenizers.tekken import Tekkenizer
from zoo.runtime.tokenizers import TekkenTokenizer, TokenizerError

from tests.tekken_files import PATTERN, STDLIB, trained_ranks, write_tekken
from zoo.loading import load_tokenizer

#: Pixtral-12B's tokenizer, shipped inside mistral-common.
PIXTRAL_FILE = Path(mistral_common.__file__).parent / "data" / "tekken_240911.json"


def _texts() -> list[str]:
    rng = random.Random(0)
    fixed = [
        "", " ", "  ", "\n", "\n\n\n", "\r\n\r\n", "\t\t x", "   leading and trailing   ",
        "Hello, world!", "HELLO World hello WORLD", "CamelCaseIdentifier snake_case_name",
        "def f(x):\n    return x + 1\n", "if (a && b) { return c[i]; } // comment\n/* block */",
        "x = 1234567890.0625e-12; y = 0xDEADBEEF; z = 1_000_000",
        "naïve café — 日本語のテキスト 🙂🚀 Ωμέγα", "Привет мир! 안녕하세요. مرحبا بالعالم. שלום",
        "e\u0301 a\u0308 \u0915\u094d\u0937", "👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷", "\u00a0\u2009\u3000\u200b\ufeff\u2028\u0085 spaces",
        "\x00\x01\x7f\x1b[31m control", "[INST] <s> </s> [IMG] look like specials but are text",
        "a" * 500, "ab" * 300, " " * 257 + "x", "1" * 100, "!!!???...,,,;;;", "http://example.com/a/b?c=d&e=f",
    ]
    pools = ["abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " \t\n\r", "!\"#$%&'()*+,-./:;<=>?@[]^_`{|}~",
             "éèàçñüößøåæœ", "日本語中文한국어", "αβγδεζηθ", "🙂🚀🎉👍🏽", "\u0301\u0308\u200d"]
    rand = []
    for _ in range(300):
        n = rng.randint(1, 60)
        rand.append("".join(rng.choice(rng.choice(pools)) for _ in range(n)))
    for _ in range(100):  # any scalar value (no surrogates)
        rand.append("".join(chr(c) for c in (rng.randint(0, 0x10FFFF) for _ in range(rng.randint(1, 20)))
                            if not 0xD800 <= c < 0xE000))
    code = [f.read_text(encoding="utf-8")[:3000] for f in sorted(STDLIB.glob("*.py"))[40:50]]
    return fixed + rand + code


TEXTS = _texts()


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tekken(tmp_path_factory.mktemp("tekken") / "tekken.json", trained_ranks(), drop_ranks=5)


@pytest.fixture(scope="module")
def small(small_file: Path) -> tuple[TekkenTokenizer, Tekkenizer]:
    return TekkenTokenizer.from_file(small_file), Tekkenizer.from_file(small_file)


@pytest.fixture(scope="module")
def pixtral() -> tuple[TekkenTokenizer, Tekkenizer]:
    return TekkenTokenizer.from_file(PIXTRAL_FILE), Tekkenizer.from_file(PIXTRAL_FILE)


@pytest.mark.parametrize("which", ["small", "pixtral"])
def test_ids_match_mistral_common(which: str, request: pytest.FixtureRequest) -> None:
    ours, ref = request.getfixturevalue(which)
    assert len(TEXTS) > 400
    for text in TEXTS:
        assert ours.encode(text, bos=True, eos=False) == ref.encode(text, bos=True, eos=False), repr(text[:80])
    assert ours.encode_batch(TEXTS[:50], bos=False, eos=True) == [ref.encode(t, bos=False, eos=True) for t in TEXTS[:50]]


@pytest.mark.parametrize("which", ["small", "pixtral"])
def test_decode_matches_mistral_common(which: str, request: pytest.FixtureRequest) -> None:
    ours, ref = request.getfixturevalue(which)
    rng = random.Random(1)
    for text in TEXTS:
        ids = ours.encode(text, bos=True, eos=True)
        assert ours.decode(ids) == text == ref.decode(ids)
    assert ours.decode_batch([ours.encode(t) for t in TEXTS[:20]]) == TEXTS[:20]
    n, v = ours.num_special_tokens, ours.vocab_size
    for _ in range(200):  # generated ids cut UTF-8 sequences and mix in control tokens
        ids = [rng.randrange(n, v) if rng.random() < 0.8 else rng.randrange(0, 20) for _ in range(rng.randint(1, 12))]
        assert ours.decode(ids) == ref.decode(ids), ids
        assert ours.decode(ids, keep_special=True) == ref.decode(ids, special_token_policy=SpecialTokenPolicy.KEEP)
    for i in [0, 1, 10, n, n + 65, n + 300, v - 1]:
        assert ours.id_to_piece(i) == ref.id_to_piece(i)
        assert ours.id_to_bytes(i) == ref.id_to_byte_piece(i, SpecialTokenPolicy.KEEP)


def test_pixtral_special_tokens(pixtral: tuple[TekkenTokenizer, Tekkenizer]) -> None:
    ours, ref = pixtral
    assert (ours.vocab_size, ours.num_special_tokens, len(ours)) == (131072, 1000, 131072) == (ref.n_words, 1000, 131072)
    assert (ours.unk_id, ours.bos_id, ours.eos_id, ours.pad_id) == (0, 1, 2, 11)
    assert [ours.special_id(t) for t in ("[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]")] == [3, 4, 10, 12, 13]
    for name in ("[INST]", "[IMG]", "[IMG_END]", "[SYSTEM_PROMPT]", "<SPECIAL_999>"):
        assert ours.special_id(name) == ref.get_special_token(name)
    assert ours.image_config == {"image_patch_size": 16, "max_image_size": 1024}
    assert json.loads(PIXTRAL_FILE.read_text())["config"]["pattern"] == PATTERN  # the small files use it too
    assert not set(ours.encode("[INST][IMG]<s></s>", bos=False)) & set(range(1000))  # text is text


def test_listed_special_tokens(tmp_path: Path) -> None:
    """Files of v7+ list their special tokens; fewer than the reserved count are padded."""
    names = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]", "<pad>"]
    path = write_tekken(tmp_path / "tekken.json", trained_ranks(100), version="v11", num_special=20,
                        special_tokens=names)
    ours, ref = TekkenTokenizer.from_file(path), Tekkenizer.from_file(path)
    assert ours.specials[:9] == names and ours.specials[19] == "<SPECIAL_19>"
    assert [ours.special_id(t) for t in names] == [ref.get_special_token(t) for t in names]
    for text in TEXTS[:100]:
        assert ours.encode(text, bos=True, eos=True) == ref.encode(text, bos=True, eos=True)


def test_save_and_load(small: tuple[TekkenTokenizer, Tekkenizer], tmp_path: Path) -> None:
    ours, _ = small
    path = ours.save(tmp_path / "out")
    assert path == tmp_path / "out" / "tekken.json"
    for source in (path, tmp_path / "out"):
        again = TekkenTokenizer.from_file(source)
        assert again == ours and [again.encode(t) for t in TEXTS[:40]] == [ours.encode(t) for t in TEXTS[:40]]
    spec = SimpleNamespace(tokenizer=SimpleNamespace(kind="tekken", file="tekken.json"))
    loaded = load_tokenizer(tmp_path / "out", spec)  # type: ignore[arg-type]
    assert isinstance(loaded, TekkenTokenizer) and loaded == ours


def test_errors_are_typed(small_file: Path, tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="no such tokenizer file"):
        TekkenTokenizer.from_file(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="not a valid tekken.json"):
        TekkenTokenizer.from_file(tmp_path / "bad.json")
    good = json.loads(small_file.read_text())

    def broken(change: object) -> Path:
        data = json.loads(json.dumps(good))
        change(data)  # type: ignore[operator]
        p = tmp_path / "tekken.json"
        p.write_text(json.dumps(data))
        return p

    with pytest.raises(TokenizerError, match="missing or bad"):
        TekkenTokenizer.from_file(broken(lambda d: d.pop("config")))
    with pytest.raises(TokenizerError, match="unknown tekken version"):
        TekkenTokenizer.from_file(broken(lambda d: d["config"].update(version="v99")))
    with pytest.raises(TokenizerError, match="must list its special_tokens"):
        TekkenTokenizer.from_file(broken(lambda d: d["config"].update(version="v11")))
    with pytest.raises(TokenizerError, match="ranks must be"):
        TekkenTokenizer.from_file(broken(lambda d: d["vocab"][300].update(rank=7)))
    with pytest.raises(TokenizerError, match="single byte"):
        TekkenTokenizer.from_file(broken(lambda d: d["vocab"][65].update(token_bytes="Qg==")))
    with pytest.raises(TokenizerError, match="ranks"):
        TekkenTokenizer.from_file(broken(lambda d: d["config"].update(default_vocab_size=10**6)))
    tok = TekkenTokenizer.from_file(small_file)
    with pytest.raises(TokenizerError, match="lone surrogates"):
        tok.encode("a\ud800b")
    with pytest.raises(TokenizerError, match="no special token"):
        tok.special_id("[NOPE]")
    with pytest.raises(IndexError):
        tok.decode([tok.vocab_size])
