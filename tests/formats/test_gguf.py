"""GGUF both ways (zoo/formats/gguf.py, specs/formats/gguf.yaml), checked against references that
are not zoo's own code:

- the `gguf` package: its quantizer and dequantizer (bit-exact), its GGUFReader (the file's
  metadata, tensor names, shapes, types and bytes);
- llama.cpp's q/k row order, written out here by hand (convert_hf_to_gguf.py's permute:
  `reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2)`);
- transformers' own GGUF loader (it reverses the permutation itself): its float32 logits on
  the very file zoo loads, within 1e-4;
- sentencepiece, for the vocabulary carried in tokenizer.ggml.*.

Tolerances: a float32 round trip is exact. f16/bf16 files hold the weights rounded once
(round-to-nearest-even, norms kept F32): the import must equal the float model with its 2-D
weights rounded the same way (exactly), so its logits are compared with that model's at 1e-5;
against the unrounded model only a loose bound is meaningful (bf16 keeps 8 bits of mantissa).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from zoo.compiler.errors import ZooError

import zoo
from zoo.checkpoint import CheckpointError
from zoo.formats.gguf import GGUFFile
from zoo.formats.gguf_write import write_gguf

gguf = pytest.importorskip("gguf")
Q = gguf.GGMLQuantizationType

TINY = ["arch.dim=64", "arch.n_layers=2", "arch.vocab_size=128", "arch.ffn.hidden_dim=160",
        "arch.attention.n_heads=8", "arch.attention.n_kv_heads=2", "arch.max_seq_len=256"]
N_HEADS, N_KV = 8, 2


def tiny(*extra: str, seed: int = 1, tokenizer=None):
    m = zoo.build("llama-2-7b", TINY + list(extra), backend="eager", seed=seed, tokenizer=tokenizer).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.08)
            else:
                p.uniform_(0.5, 1.5)  # norms away from 1, so a swapped norm shows
    return m


def logits(model, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(tokens)
    return out if isinstance(out, torch.Tensor) else out.logits


def permute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """transformers' half-split q/k rows -> llama.cpp's (Meta's interleaved) order, as
    convert_hf_to_gguf.py's LlamaModel.permute writes it."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w: torch.Tensor, heads: int) -> torch.Tensor:
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def by_hand(state: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """A zoo state dict under llama.cpp's names, q/k permuted (written independently of the key map)."""
    out = {"token_embd.weight": state["embed.weight"], "output_norm.weight": state["norm.weight"]}
    if "output.weight" in state:
        out["output.weight"] = state["output.weight"]
    names = {"attn_norm.weight": "attn_norm.weight", "ffn_norm.weight": "ffn_norm.weight",
             "attn.q.weight": "attn_q.weight", "attn.k.weight": "attn_k.weight", "attn.v.weight": "attn_v.weight",
             "attn.o.weight": "attn_output.weight", "ffn.gate.weight": "ffn_gate.weight",
             "ffn.up.weight": "ffn_up.weight", "ffn.down.weight": "ffn_down.weight"}
    for i in range(n_layers):
        for ours, theirs in names.items():
            t = state[f"blocks.{i}.{ours}"]
            t = permute(t, N_HEADS) if ours == "attn.q.weight" else permute(t, N_KV) if ours == "attn.k.weight" else t
            out[f"blk.{i}.{theirs}"] = t
    return out


def reader_tensors(path: Path) -> dict[str, object]:
    return {t.name: t for t in gguf.GGUFReader(str(path)).tensors}


def field(reader, key: str):
    f = reader.get_field(key)
    assert f is not None, key
    return f.contents()


@pytest.fixture(scope="module")
def model():
    return tiny()


@pytest.fixture(scope="module")
def files(model, tmp_path_factory):
    d = tmp_path_factory.mktemp("gguf")
    return {dt: write_gguf(model, d / f"tiny.{dt}.gguf", dtype=dt, progress=False)
            for dt in ("f32", "f16", "bf16", "q8_0", "q4_0")}


TOKENS = torch.randint(0, 128, (2, 11), generator=torch.Generator().manual_seed(3))


def test_f32_round_trip_is_exact(model, files):
    back = zoo.load(files["f32"], backend="eager")
    assert back.spec.arch.tie_embeddings is False and back.spec.arch.attention.n_kv_heads == N_KV
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    torch.testing.assert_close(logits(back, TOKENS), logits(model, TOKENS), atol=1e-5, rtol=0)


@pytest.mark.parametrize("dt,torch_dtype,loose", [("f16", torch.float16, 0.02), ("bf16", torch.bfloat16, 0.1)])
def test_half_files_hold_the_weights_rounded_once(model, files, dt, torch_dtype, loose):
    back = zoo.load(files[dt], backend="eager")
    rounded = tiny()
    with torch.no_grad():
        for (k, p), (_, q) in zip(rounded.named_parameters(), model.named_parameters()):
            p.copy_(q.to(torch_dtype).float() if q.dim() > 1 else q)  # 1-D tensors stay F32
    for k, v in rounded.state_dict().items():
        assert back.state_dict()[k].dtype == torch.float32 and torch.equal(back.state_dict()[k], v), k
    torch.testing.assert_close(logits(back, TOKENS), logits(rounded, TOKENS), atol=1e-5, rtol=0)
    assert (logits(back, TOKENS) - logits(model, TOKENS)).abs().max() < loose


@pytest.mark.parametrize("dt", ["q8_0", "q4_0"])
def test_quantized_files_are_gguf_bit_exact(model, files, dt):
    """Every tensor's bytes are gguf's own quantize of the (permuted) weights; the import is
    gguf's own dequantize of those bytes, un-permuted; the logits are that model's."""
    want = by_hand(model.state_dict(), 2)
    found = reader_tensors(files[dt])
    assert set(found) == set(want)
    ref_state = {}
    for name, w in want.items():
        t = found[name]
        expect = Q.F32 if w.dim() == 1 else Q.Q8_0 if dt == "q8_0" or name in ("token_embd.weight", "output.weight") \
            else Q.Q4_0
        assert t.tensor_type == expect, name
        if expect == Q.F32:
            assert np.array_equal(np.asarray(t.data).reshape(w.shape), w.numpy()), name
            ref_state[name] = w
            continue
        q = gguf.quants.quantize(w.numpy().astype(np.float32), expect)
        assert np.array_equal(np.asarray(t.data), q), name  # bit-exact to the reference quantizer
        ref_state[name] = torch.from_numpy(gguf.quants.dequantize(q, expect))
    back = zoo.load(files[dt], backend="eager")
    sd = back.state_dict()
    for i in range(2):
        assert torch.equal(sd[f"blocks.{i}.attn.q.weight"], unpermute(ref_state[f"blk.{i}.attn_q.weight"], N_HEADS))
        assert torch.equal(sd[f"blocks.{i}.attn.k.weight"], unpermute(ref_state[f"blk.{i}.attn_k.weight"], N_KV))
        assert torch.equal(sd[f"blocks.{i}.ffn.down.weight"], ref_state[f"blk.{i}.ffn_down.weight"])
    assert torch.equal(sd["embed.weight"], ref_state["token_embd.weight"])
    ref = tiny()
    with torch.no_grad():
        for k, p in ref.named_parameters():
            p.copy_(sd[k])
    torch.testing.assert_close(logits(back, TOKENS), logits(ref, TOKENS), atol=1e-5, rtol=0)
    err = (logits(back, TOKENS) - logits(model, TOKENS)).abs().max() / logits(model, TOKENS).abs().max()
    assert err < (0.05 if dt == "q8_0" else 0.5)


def test_the_file_is_what_llama_cpp_reads(model, files):
    """Metadata keys and values, tensor names, shapes and types, read by gguf's own reader."""
    r = gguf.GGUFReader(str(files["q8_0"]))
    assert field(r, "general.architecture") == "llama"
    assert field(r, "general.file_type") == gguf.LlamaFileType.MOSTLY_Q8_0
    assert field(r, "general.quantization_version") == gguf.GGML_QUANT_VERSION
    expect = {"llama.embedding_length": 64, "llama.block_count": 2, "llama.feed_forward_length": 160,
              "llama.attention.head_count": N_HEADS, "llama.attention.head_count_kv": N_KV,
              "llama.context_length": 256, "llama.rope.dimension_count": 8, "llama.vocab_size": 128}
    for k, v in expect.items():
        assert field(r, k) == v, k
    assert field(r, "llama.rope.freq_base") == pytest.approx(10000.0)
    assert field(r, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-5)
    assert field(r, "tokenizer.ggml.model") == "none"  # a model without a SentencePiece tokenizer
    shapes = {t.name: tuple(int(d) for d in t.shape) for t in r.tensors}  # GGUF order: ne0 (columns) first
    assert shapes["token_embd.weight"] == (64, 128) and shapes["output.weight"] == (64, 128)
    assert shapes["blk.0.attn_k.weight"] == (64, 16) and shapes["blk.1.ffn_down.weight"] == (160, 64)
    assert shapes["blk.0.attn_norm.weight"] == (64,) and shapes["output_norm.weight"] == (64,)
    assert len(shapes) == 3 + 9 * 2
    w = np.asarray(reader_tensors(files["f32"])["blk.1.attn_q.weight"].data)
    assert np.array_equal(w, permute(model.state_dict()["blocks.1.attn.q.weight"], N_HEADS).numpy())


def _transformers_gguf():
    pytest.importorskip("accelerate")  # transformers' GGUF loader wants it
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM


@pytest.mark.parametrize("dt", ["f32", "q8_0", "q4_0"])
def test_transformers_reads_the_same_model(files, dt):
    """transformers' independent GGUF loader (its own metadata mapping and q/k un-permute) on
    the file zoo wrote: the same float32 logits as zoo's import of it."""
    ref = _transformers_gguf().from_pretrained(str(files[dt].parent), gguf_file=files[dt].name,
                                               dtype=torch.float32).eval()
    ours = zoo.load(files[dt], backend="eager")
    with torch.no_grad():
        theirs = ref(TOKENS).logits
    torch.testing.assert_close(logits(ours, TOKENS), theirs, atol=1e-4, rtol=0)


def test_tied_embeddings_and_a_folder_holding_one_file(tmp_path):
    m = tiny("arch.tie_embeddings=true")
    write_gguf(m, tmp_path / "only.gguf", dtype="f32")
    assert "output.weight" not in reader_tensors(tmp_path / "only.gguf")
    back = zoo.load(tmp_path, backend="eager")  # the folder: its one .gguf file
    assert back.spec.arch.tie_embeddings is True
    torch.testing.assert_close(logits(back, TOKENS), logits(m, TOKENS), atol=1e-5, rtol=0)
    write_gguf(m, tmp_path / "second.gguf", dtype="f16")
    with pytest.raises(CheckpointError, match="2 .gguf files"):
        zoo.load(tmp_path)


def _k_block(qtype, n_blocks: int, rng) -> np.ndarray:
    """Random bytes laid out as K-quant blocks, with small finite f16 scales where the format keeps them."""
    size = gguf.GGML_QUANT_SIZES[qtype][1]
    raw = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    scale = lambda n: np.full((n_blocks, 1), 0.004, np.float16).view(np.uint8)  # noqa: E731
    if qtype == Q.Q4_K:  # d, dmin (f16), 12 bytes of 6-bit scales/mins, 128 bytes of nibbles
        raw[:, 0:2], raw[:, 2:4] = scale(1), scale(1)
    else:  # Q6_K: ql 128, qh 64, int8 scales 16, d (f16) last
        raw[:, 208:210] = scale(1)
    return raw


def test_k_quants_import_by_gguf_dequantize(tmp_path):
    """A Q4_K_M-style file (Q4_K and Q6_K tensors, 256-wide rows): each weight is gguf's own
    dequantize of the stored blocks, and transformers' loader sees the same model."""
    m = tiny("arch.dim=256", "arch.ffn.hidden_dim=256", "arch.n_layers=1")
    src = tmp_path / "src.gguf"
    write_gguf(m, src, dtype="f32")
    r = gguf.GGUFReader(str(src))
    w = gguf.GGUFWriter(str(tmp_path / "k.gguf"), "llama")
    for f in r.fields.values():
        if f.name.startswith("GGUF.") or f.name == "general.architecture":
            continue
        vtype = f.types[0]
        sub = f.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(f.name, f.contents(), vtype, sub_type=sub)
    rng = np.random.default_rng(0)
    stored = {}
    for t in r.tensors:
        data = np.asarray(t.data)
        if data.ndim == 2:
            qtype = Q.Q6_K if t.name in ("output.weight", "blk.0.ffn_down.weight", "blk.0.attn_v.weight") else Q.Q4_K
            rows, cols = data.shape
            blocks = _k_block(qtype, rows * cols // 256, rng).reshape(rows, -1)
            w.add_tensor(t.name, blocks, raw_dtype=qtype)  # byte shape: the writer derives (rows, cols)
            stored[t.name] = torch.from_numpy(gguf.quants.dequantize(blocks, qtype))
        else:
            w.add_tensor(t.name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(str(tmp_path / "k.gguf")).tensors}
    assert types["blk.0.attn_q.weight"] == Q.Q4_K and types["output.weight"] == Q.Q6_K
    back = zoo.load(tmp_path / "k.gguf", backend="eager")
    sd = back.state_dict()
    assert torch.equal(sd["blocks.0.attn.q.weight"], unpermute(stored["blk.0.attn_q.weight"], N_HEADS))
    assert torch.equal(sd["blocks.0.ffn.down.weight"], stored["blk.0.ffn_down.weight"])
    assert torch.equal(sd["output.weight"], stored["output.weight"])
    ours = logits(back, TOKENS)
    assert torch.isfinite(ours).all()
    ref = _transformers_gguf().from_pretrained(str(tmp_path), gguf_file="k.gguf", dtype=torch.float32).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours, ref(TOKENS).logits, atol=1e-4, rtol=1e-5)


# --- the vocabulary ----------------------------------------------------------------------------

TEXTS = ["def add(a, b):\n    return a + b", "the quick brown fox", "  hello   zoo ", "héllo wörld ✓", ""]


def _spm(folder: Path) -> Path:
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(["def add(a, b):\n    return a + b", "the quick brown fox jumps over the lazy dog",
                                 "hello world, hello zoo"] * 30))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(folder / "tokenizer"), model_type="bpe",
                                   vocab_size=320, byte_fallback=True, minloglevel=2, num_threads=1,
                                   character_coverage=1.0, normalization_rule_name="identity",
                                   remove_extra_whitespaces=False)
    return folder / "tokenizer.model"


def test_sentencepiece_vocabulary_both_ways(tmp_path):
    import sentencepiece as spm
    from zoo.runtime.tokenizers import SentencePieceTokenizer

    path = _spm(tmp_path / "tok")
    sp = spm.SentencePieceProcessor(model_file=str(path))
    m = tiny("arch.vocab_size=384", tokenizer=SentencePieceTokenizer.from_file(path))
    out = write_gguf(m, tmp_path / "tok.gguf", dtype="q8_0")
    r = gguf.GGUFReader(str(out))
    n = sp.get_piece_size()
    assert field(r, "tokenizer.ggml.model") == "llama"
    tokens = field(r, "tokenizer.ggml.tokens")
    assert len(tokens) == 384  # padded to the embedding, as llama.cpp's converter does
    assert tokens[:n] == [sp.id_to_piece(i) for i in range(n)] and tokens[n] == f"[PAD{n}]"
    assert field(r, "tokenizer.ggml.scores")[:n] == pytest.approx([sp.get_score(i) for i in range(n)])
    types = field(r, "tokenizer.ggml.token_type")
    assert types[sp.unk_id()] == 2 and types[sp.bos_id()] == 3 and types[sp.piece_to_id("<0x0A>")] == 6
    assert field(r, "tokenizer.ggml.bos_token_id") == sp.bos_id() and field(r, "tokenizer.ggml.eos_token_id") == sp.eos_id()
    assert field(r, "tokenizer.ggml.unknown_token_id") == sp.unk_id()
    assert field(r, "tokenizer.ggml.add_bos_token") is True and field(r, "tokenizer.ggml.add_space_prefix") is True

    back = zoo.load(out, backend="eager")
    assert back.tokenizer is not None and back.spec.tokenizer.bos_id == sp.bos_id()
    for text in TEXTS:
        assert back.tokenizer.encode(text, bos=False) == sp.encode(text), text
        ids = sp.encode(text)
        assert back.tokenizer.decode(ids) == sp.decode(ids)
    saved = back.tokenizer.save(tmp_path / "resaved")  # a tokenizer.model sentencepiece reads
    again = spm.SentencePieceProcessor(model_file=str(saved))
    assert [again.encode(t) for t in TEXTS] == [sp.encode(t) for t in TEXTS]


def test_model_proto_serializer_round_trips(tmp_path):
    from zoo.runtime.tokenizers.spm_proto import (
        load_model_proto,
        parse_model_proto,
        serialize_model_proto,
    )

    proto, _ = load_model_proto(_spm(tmp_path))
    assert parse_model_proto(serialize_model_proto(proto)) == proto


# --- the CLI -------------------------------------------------------------------------------------


def test_zoo_convert_to_gguf(model, tmp_path):
    from zoo.cli import main as cli

    src = model.save(tmp_path / "model")
    assert cli(["convert", str(src), "--to", "gguf", "--dtype", "q4_0", str(tmp_path / "model.gguf")]) == 0
    assert field(gguf.GGUFReader(str(tmp_path / "model.gguf")), "general.file_type") == gguf.LlamaFileType.MOSTLY_Q4_0
    assert cli(["convert", str(src), "--to", "gguf", "--dtype", "q4_0", str(tmp_path / "model.gguf")]) != 0  # exists
    assert cli(["convert", str(src), "--to", "gguf", "--dtype", "q3_k", str(tmp_path / "other.gguf")]) != 0
    assert not (tmp_path / "other.gguf").exists() and not list(tmp_path.glob(".*tmp*"))
    back = zoo.convert(tmp_path / "model.gguf", tmp_path / "again.gguf", "gguf", dtype="f32")  # gguf -> gguf
    assert zoo.load(back).spec.arch.dim == 64


def test_what_gguf_cannot_express_is_refused(tmp_path):
    m = tiny("arch.attention.sliding_window=16")
    with pytest.raises(ZooError, match="sliding"):
        write_gguf(m, tmp_path / "x.gguf")
    assert not list(tmp_path.iterdir())
    with pytest.raises(ZooError, match="ends in .gguf"):
        write_gguf(tiny(), tmp_path / "x.bin")


# --- hostile files -------------------------------------------------------------------------------


@pytest.fixture()
def f32_bytes(files) -> bytes:
    return files["f32"].read_bytes()


def _tensor_info_at(data: bytes, name: str) -> int:
    """Where a tensor's info (after its name) starts in the header: n_dims, dims, type, offset."""
    key = struct.pack("<Q", len(name)) + name.encode()
    pos = data.index(key)
    return pos + len(key)


def _load(tmp_path: Path, data: bytes):
    p = tmp_path / "bad.gguf"
    p.write_bytes(data)
    return zoo.load(p)


def test_bad_magic_and_tiny_files(tmp_path, f32_bytes):
    with pytest.raises(CheckpointError, match=r"bad\.gguf: bad magic"):
        _load(tmp_path, b"GGML" + f32_bytes[4:])
    with pytest.raises(CheckpointError, match="not a GGUF file"):
        _load(tmp_path, b"GGUF")
    with pytest.raises(CheckpointError, match="version 1"):
        _load(tmp_path, f32_bytes[:4] + struct.pack("<I", 1) + f32_bytes[8:])
    with pytest.raises(CheckpointError, match="big-endian"):
        _load(tmp_path, f32_bytes[:4] + struct.pack(">I", 3) + f32_bytes[8:])


def test_truncated_files_name_the_tensor(tmp_path, f32_bytes):
    with pytest.raises(CheckpointError, match=r"bad\.gguf: truncated: tensor output\.weight"):
        _load(tmp_path, f32_bytes[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        _load(tmp_path, f32_bytes[:300])  # inside the metadata
    huge = f32_bytes[:8] + struct.pack("<Q", 2**40) + f32_bytes[16:]  # claims 2^40 tensors
    with pytest.raises(CheckpointError, match="claims"):
        _load(tmp_path, huge)


def test_a_shape_the_metadata_does_not_describe(tmp_path, f32_bytes):
    at = _tensor_info_at(f32_bytes, "blk.0.ffn_up.weight")
    n_dims, cols, rows = struct.unpack_from("<IQQ", f32_bytes, at)
    assert (n_dims, cols, rows) == (2, 64, 160)
    bad = bytearray(f32_bytes)
    struct.pack_into("<Q", bad, at + 12, 80)  # 80 rows where feed_forward_length says 160
    with pytest.raises(CheckpointError, match=r"bad\.gguf(.|\n)*blk\.0\.ffn_up\.weight"):
        _load(tmp_path, bytes(bad))


def test_an_unknown_tensor_type(tmp_path, f32_bytes):
    at = _tensor_info_at(f32_bytes, "blk.1.attn_k.weight")
    bad = bytearray(f32_bytes)
    struct.pack_into("<I", bad, at + 4 + 16, 99)
    with pytest.raises(CheckpointError, match=r"bad\.gguf: tensor blk\.1\.attn_k\.weight: unknown tensor type 99"):
        _load(tmp_path, bytes(bad))
    struct.pack_into("<I", bad, at + 4 + 16, int(Q.IQ2_XXS))
    with pytest.raises(CheckpointError, match="blk.1.attn_k.weight: type IQ2_XXS is not supported"):
        _load(tmp_path, bytes(bad))


def test_other_architectures_are_refused_by_name(tmp_path, f32_bytes):
    data = f32_bytes.replace(struct.pack("<Q", 5) + b"llama", struct.pack("<Q", 5) + b"gemma", 1)
    with pytest.raises(CheckpointError, match="general.architecture is 'gemma'"):
        _load(tmp_path, data)


def test_a_part_of_a_split_file_is_refused(tmp_path):
    w = gguf.GGUFWriter(str(tmp_path / "m-00001-of-00002.gguf"), "llama")
    w.add_uint16("split.count", 2)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(CheckpointError, match="split GGUF"):
        zoo.load(tmp_path / "m-00001-of-00002.gguf")


def test_garbage_in_the_header_is_a_checkpoint_error(tmp_path, f32_bytes):
    """Bytes flipped at random in the header: a ZooError (or a model), never another exception."""
    rng = np.random.default_rng(0)
    header = GGUFFile(tmp_path / "ok.gguf") if (tmp_path / "ok.gguf").write_bytes(f32_bytes) else None
    for trial in range(40):
        bad = bytearray(f32_bytes)
        for pos in rng.integers(8, header.data_offset, 4):
            bad[pos] = int(rng.integers(0, 256))
        p = tmp_path / f"fuzz{trial}.gguf"
        p.write_bytes(bytes(bad))
        try:
            zoo.load(p)
        except ZooError:
            pass


@pytest.mark.slow
def test_llama_cpp_runs_the_export_with_the_same_greedy_tokens(tmp_path):
    """llama.cpp itself (llama-cpp-python, a bench extra: it builds from source in ~10 minutes)
    on the exported file: the same greedy continuation as zoo's float32 model."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from zoo.runtime.tokenizers import SentencePieceTokenizer

    m = tiny("arch.vocab_size=384", tokenizer=SentencePieceTokenizer.from_file(_spm(tmp_path / "tok")))
    path = write_gguf(m, tmp_path / "m.gguf", dtype="f32")
    prompt = [1, 5, 17, 42, 9]
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, logits_all=False, verbose=False, n_threads=2)
    theirs = []
    for tok in llm.generate(prompt, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0):
        theirs.append(tok)
        if len(theirs) == 16:
            break
    ids = torch.tensor([prompt])
    ours = []
    for _ in range(16):
        nxt = int(logits(m, ids)[0, -1].argmax())
        ours.append(nxt)
        ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
    assert ours == theirs
