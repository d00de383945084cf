"""SCIP tools: `zoo data embed` (pooled hidden states equal a one-file-at-a-time reference,
memmap + index, resume), the synthetic corruptions (each does what it says, deterministic),
and `zoo data prune` (budget split between the smallest clusters and the farthest files)."""

from __future__ import annotations

import ast
import json
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch
from zoo.runtime.errors import UsageError

import zoo
from zoo.cli.main import main as cli
from zoo.data import KINDS, corrupt, embed_corpus, load_embeddings, scip_prune

STDLIB = Path(sysconfig.get_paths()["stdlib"])
SOURCE = (STDLIB / "bisect.py").read_text()


@pytest.fixture(scope="module")
def tiny_code():
    return zoo.load("tiny-code", dtype="float32")


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    for f in sorted(STDLIB.glob("*.py"))[:7]:
        (root / "pkg").mkdir(parents=True, exist_ok=True)
        (root / "pkg" / f.name).write_text(f.read_text(encoding="utf-8", errors="replace")[:1500])
    (root / "empty.py").write_text("")
    return root


def test_embed_equals_one_file_at_a_time(tiny_code, corpus, tmp_path):
    files = sorted(corpus.rglob("*.py"))
    emb = embed_corpus(tiny_code, corpus, files, tmp_path / "emb", batch_size=3, max_tokens=64, progress=False,
                       log=lambda *a: None)
    assert emb.vectors.shape == (8, 192) and emb.vectors.dtype == np.float32
    assert emb.files == [f.relative_to(corpus).as_posix() for f in files]
    for i, f in enumerate(files):
        ids = tiny_code.tokenizer.encode(f.read_text(), bos=False)[:64] or [1]
        with torch.no_grad():
            ref = tiny_code.hidden_states(torch.tensor([ids]))[0].mean(0)
        np.testing.assert_allclose(emb.vectors[i], ref.numpy(), rtol=1e-4, atol=1e-4)
    meta = json.loads((tmp_path / "emb" / "index.json").read_text())
    assert meta["done"] == 8 and meta["pooling"] == "mean" and meta["max_tokens"] == 64


def test_embed_resumes(tiny_code, corpus, tmp_path):
    files = sorted(corpus.rglob("*.py"))
    full = np.array(embed_corpus(tiny_code, corpus, files, tmp_path / "a", batch_size=2, max_tokens=32,
                                 progress=False, log=lambda *a: None).vectors)
    out = tmp_path / "b"
    embed_corpus(tiny_code, corpus, files, out, batch_size=2, max_tokens=32, progress=False, log=lambda *a: None)
    meta = json.loads((out / "index.json").read_text())
    meta["done"] = 4  # as if interrupted after two batches
    (out / "index.json").write_text(json.dumps(meta))
    arr = np.memmap(out / "embeddings.f32", dtype=np.float32, mode="r+", shape=(8, 192))
    arr[4:] = 0  # rows past `done` are recomputed
    arr.flush()
    with pytest.raises(UsageError, match="only 4 of 8"):
        load_embeddings(out)
    said = []
    emb = embed_corpus(tiny_code, corpus, files, out, batch_size=2, max_tokens=32, progress=False, log=said.append)
    assert said[0] == "resuming: 4 of 8 files already embedded"
    np.testing.assert_array_equal(np.array(emb.vectors), full)


@pytest.mark.parametrize("kind", KINDS)
def test_corruptions_do_what_they_say(kind):
    out = corrupt(SOURCE, kind, rate=0.05, seed=3)
    assert out is not None and out != SOURCE
    assert out == corrupt(SOURCE, kind, rate=0.05, seed=3)  # deterministic
    old, new = SOURCE.splitlines(), out.splitlines()
    if kind == "remove_closing_bracket":
        assert sum(out.count(b) for b in ")]}") < sum(SOURCE.count(b) for b in ")]}")
        assert len(out) < len(SOURCE)
    elif kind == "remove_colon":
        assert out.count(":\n") < SOURCE.count(":\n")
    elif kind == "rename_variable":
        assert len(new) == len(old) and sum(a != b for a, b in zip(old, new)) >= 1
    elif kind == "remove_lines":
        assert len(new) < len(old)
    elif kind == "swap_lines":
        assert sorted(new) == sorted(old) and new != old
    elif kind == "break_indentation":
        assert [line.strip() for line in new] == [line.strip() for line in old]
    elif kind == "off_by_one":
        assert len(new) == len(old)
    elif kind == "flip_comparison":
        assert any(op in out for op in ("!=", ">=", "<="))
    if kind in ("remove_closing_bracket", "remove_colon", "break_indentation"):
        with pytest.raises(SyntaxError):  # these at 5% of sites break the parse
            ast.parse(out)
    if kind in ("off_by_one", "flip_comparison", "rename_variable"):
        ast.parse(out)  # content changes that still parse


def test_corrupt_edge_cases():
    assert corrupt("", "remove_lines") is None
    assert corrupt("x = 1\n", "remove_closing_bracket") is None
    with pytest.raises(UsageError, match="unknown corruption"):
        corrupt(SOURCE, "typo")


def test_prune_budget_split():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 16))
    sizes = [40, 30, 20, 10]  # four clusters, the last one small
    x = np.concatenate([c + 0.05 * rng.normal(size=(n, 16)) for c, n in zip(centers, sizes)])
    res = scip_prune(x, 4, prune=0.2, size_share=0.5, seed=0)
    assert (~res.keep).sum() == 20
    small = res.reason == "small cluster"
    assert small.sum() == 10 and (np.flatnonzero(small) >= 90).all()  # the 10-file cluster, whole
    far = res.reason == "far from centroid"
    assert far.sum() == 10
    kept_far = res.clusters.distance[res.keep & (np.arange(100) < 90)]
    assert res.clusters.distance[far].min() >= kept_far.max()  # farthest first
    only_far = scip_prune(x, 4, prune=0.1, size_share=0.0)
    assert (only_far.reason == "small cluster").sum() == 0 and (~only_far.keep).sum() == 10
    with pytest.raises(UsageError, match="--clusters"):
        scip_prune(x, 0)


def test_cli_embed_corrupt_prune(corpus, tmp_path, capsys):
    assert cli(["data", "corrupt", str(corpus), "--out", str(tmp_path / "bad"), "--rate", "0.1"]) == 0
    manifest = json.loads((tmp_path / "bad" / "corruptions.json").read_text())
    assert len(manifest) == 7 and set(manifest.values()) <= set(KINDS)  # the empty file has no site
    assert cli(["data", "corrupt", str(corpus), "--out", str(tmp_path / "bad")]) == 2
    assert "exists" in capsys.readouterr().err
    assert cli(["data", "corrupt", str(corpus), "--out", str(tmp_path / "bad"), "--overwrite", "--kinds",
                "swap_lines"]) == 0
    assert set(json.loads((tmp_path / "bad" / "corruptions.json").read_text()).values()) == {"swap_lines"}
    assert cli(["data", "embed", str(corpus), "--model", "tiny-code", "--out", str(tmp_path / "emb"),
                "--max-tokens", "32", "--no-progress"]) == 0
    assert "tokens/s" in capsys.readouterr().out
    assert cli(["data", "prune", str(corpus), "--embeddings", str(tmp_path / "emb"), "--clusters", "3",
                "--prune", "0.25", "--out", str(tmp_path / "kept.txt")]) == 0
    kept = (tmp_path / "kept.txt").read_text().splitlines()
    assert len(kept) == 6 and all(Path(p).is_file() for p in kept)
    assert cli(["data", "prune", str(tmp_path), "--embeddings", str(tmp_path / "emb"), "--clusters", "3",
                "--out", str(tmp_path / "k.txt")]) == 2
    assert "not under" in capsys.readouterr().err


@pytest.fixture
def bert_folder(tmp_path):
    """A tiny random BERT and its WordPiece tokenizer, as a transformers folder."""
    transformers = pytest.importorskip("transformers")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(
        "def return import class self if else for in while none true false print len range os sys".split()
        + list("abcdefghijklmnopqrstuvwxyz0123456789_()[]{}:.,=+-*/<>#'\"")))
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    cfg = transformers.BertConfig(vocab_size=len(words), hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=96, max_position_embeddings=128)
    torch.manual_seed(0)
    net = transformers.BertModel(cfg).eval()
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.2)  # attention far from uniform
    net.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder, tok, net


def test_embed_with_a_transformers_encoder(bert_folder, corpus, tmp_path, capsys):
    """An encoder folder (not a decoder zoo builds): batches with padding masked equal each file
    alone through transformers, mean-pooled over its tokens; the CLI picks it by its config."""
    from zoo.data.hf_encoder import TransformersEncoder, is_encoder_folder

    folder, tok, net = bert_folder
    assert is_encoder_folder(folder) and not is_encoder_folder(corpus)
    files = sorted(corpus.rglob("*.py"))
    emb = embed_corpus(TransformersEncoder(folder), corpus, files, tmp_path / "emb", batch_size=3, max_tokens=40,
                       progress=False, log=lambda *a: None)
    assert emb.vectors.shape == (8, 48) and emb.meta["model"] == str(folder)
    for i, f in enumerate(files):
        enc = tok(f.read_text(), truncation=True, max_length=40, return_tensors="pt")
        with torch.no_grad():
            ref = net(**enc).last_hidden_state[0].mean(0)
        np.testing.assert_allclose(emb.vectors[i], ref.numpy(), rtol=1e-4, atol=1e-5)
    assert cli(["data", "embed", str(corpus), "--model", str(folder), "--out", str(tmp_path / "emb2"),
                "--max-tokens", "40", "--no-progress"]) == 0
    assert "tokens/s" in capsys.readouterr().out
    np.testing.assert_allclose(load_embeddings(tmp_path / "emb2").vectors, emb.vectors, rtol=1e-5, atol=1e-6)
    assert cli(["data", "embed", str(corpus), "--model", str(folder), "--out", str(tmp_path / "emb3"),
                "--max-tokens", "1000", "--no-progress"]) == 2  # past the encoder's 128 positions
    assert "context" in capsys.readouterr().err
