"""Held-out compression of the code tokenizer against LLaMA-style SentencePiece BPE, on Python.

    .venv/bin/python bench/tokenizer.py                  # full table + vocabulary sweep (~1-2 min)
    .venv/bin/python bench/tokenizer.py --no-sweep       # the three headline rows only
    .venv/bin/python bench/tokenizer.py --out tok/       # also save the code tokenizer (tokenizer.json)
    .venv/bin/python bench/tokenizer.py --llama PATH     # add a real LLaMA tokenizer.model, if you have one
    .venv/bin/python bench/tokenizer.py --study          # only the regex x vocabulary study (below)
    .venv/bin/python bench/tokenizer.py --study --json s.json --plot s.png   # ... saved and drawn
    .venv/bin/python bench/tokenizer.py --from-json s.json --plot s.png      # redrawn, nothing measured

--study (Dagan et al.'s comparison, docs/tokenizers.md): byte-level BPEs trained with each
pre-tokenization regex of `zoo tokenizer train` (gpt4, llama, code) at each vocabulary size
(--study-sizes, default 1024,4096,16384), bytes/token on the held-out files; then the decode-
speed consequence: random-weight models of tiny-code's shape at each vocabulary size, greedy
decode tokens/s (batch 1, float32, best of 3), times each tokenizer's characters/token =
characters of code per second.

Corpus: the running interpreter's standard library (`sysconfig.get_paths()["stdlib"]`), every
`*.py` outside site-packages/dist-packages and test folders (test, tests, idle_test). A file is
held out when sha256(its path relative to the stdlib, as posix) mod 10 == 0: a fixed split,
independent of file order and machine. Files are read as UTF-8 (invalid bytes -> U+FFFD).

The real LLaMA tokenizer.model cannot be downloaded here (no internet), so the LLaMA row is a
SentencePiece BPE trained *the LLaMA way* (its trainer_spec: bpe, byte_fallback, split_digits,
identity normalization, dummy prefix, whitespace-only pieces allowed, lines as sentences, max
piece length 16) on the same training files; a second one at the code tokenizer's vocabulary
size compares like for like. Metric: UTF-8 bytes of the held-out files / tokens (no BOS).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import sysconfig
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo.runtime.tokenizers.bpe import (  # noqa: E402
    DEFAULT_VOCAB_SIZE,
    GPT4_PATTERN,
    BPETokenizer,
    train_code_tokenizer,
)

import zoo  # noqa: E402
from bench.figure import add_figure_args, emit, light_grid, pyplot, redraw, save  # noqa: E402

EXCLUDED_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
SWEEP = (1024, 2048, 4096, 8192, 16384, 32000)
# two reference tiny LLaMA shapes (5-20M parameters) for the embedding-share table
SHAPES = {"d256": ["arch.dim=256", "arch.n_layers=6", "arch.attention.n_heads=4", "arch.ffn.hidden_dim=704"],
          "d384": ["arch.dim=384", "arch.n_layers=8", "arch.attention.n_heads=6", "arch.ffn.hidden_dim=1024"]}


def split_corpus(root: Path) -> tuple[list[Path], list[Path]]:
    files = sorted(p for p in root.rglob("*.py") if not EXCLUDED_DIRS & set(p.relative_to(root).parts))
    held = [p for p in files if int(hashlib.sha256(p.relative_to(root).as_posix().encode()).hexdigest(), 16) % 10 == 0]
    return [p for p in files if p not in set(held)], held


def read(files: list[Path]) -> list[str]:
    return [p.read_text(encoding="utf-8", errors="replace") for p in files]


def train_spm(lines: list[str], vocab_size: int) -> object:
    """A SentencePiece BPE with LLaMA's trainer settings (vocab_size aside)."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type="bpe", vocab_size=vocab_size,
        byte_fallback=True, split_digits=True, normalization_rule_name="identity", add_dummy_prefix=True,
        remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, character_coverage=0.99995,
        max_sentence_length=4192, max_sentencepiece_length=16, split_by_unicode_script=True,
        split_by_whitespace=True, split_by_number=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=2, minloglevel=2)
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def study(train_texts: list[str], held_texts: list[str], sizes: list[int], new_tokens: int = 64) -> dict:
    """The regex x vocabulary table and the decode-speed consequence (see the module doc); returns
    the figures as the dict `plot_study` draws (and --json saves)."""
    import torch

    from zoo.tokenizer.train import REGEXES

    held_bytes = sum(len(t.encode()) for t in held_texts)
    held_chars = sum(len(t) for t in held_texts)
    bpt: dict[tuple[str, int], float] = {}
    cpt: dict[tuple[str, int], float] = {}
    for regex in REGEXES:
        for vocab in sizes:
            tok = train_code_tokenizer([], vocab, texts=train_texts, pattern=REGEXES[regex])
            n = sum(len(ids) for ids in tok.encode_batch(held_texts, bos=False))
            bpt[regex, vocab], cpt[regex, vocab] = held_bytes / n, held_chars / n
            print(f"  trained {regex} {vocab}: {held_bytes / n:.3f} bytes/token", file=sys.stderr, flush=True)
    print("bytes/token on held-out Python, byte-level BPE per pre-tokenization regex x vocabulary size:")
    print(f"{'regex':<8}" + "".join(f"{v:>10}" for v in sizes))
    for regex in REGEXES:
        print(f"{regex:<8}" + "".join(f"{bpt[regex, v]:>10.3f}" for v in sizes))
    torch.set_num_threads(1)  # one core each: the machine is shared, and decode at this size is latency-bound
    print(f"\ndecode speed of tiny-code-shaped models (dim 192, 8 layers incl. 4 heads, random weights, float32, "
          f"1 thread, greedy, batch 1, {new_tokens} new tokens after 16; best of 5, the sizes interleaved):")
    models = {v: zoo.build("tiny-code", [f"arch.vocab_size={v}"], seed=0, dtype="float32").eval() for v in sizes}
    prompt = [[3 + i for i in range(16)]]
    best = {v: float("inf") for v in sizes}
    with torch.no_grad():
        for m in models.values():
            m.generate(prompt, max_new_tokens=8)
        for _ in range(5):
            for v, m in models.items():
                t = time.perf_counter()
                m.generate(prompt, max_new_tokens=new_tokens)
                best[v] = min(best[v], time.perf_counter() - t)
    print(f"{'vocab':>6} {'params':>8} {'tokens/s':>9} | " + " ".join(f"{r + ' chars/s':>14}" for r in REGEXES))
    result: dict = {"sizes": sizes, "bytes_per_token": {r: [bpt[r, v] for v in sizes] for r in REGEXES},
                    "params": [], "tokens_per_s": [], "chars_per_s": {r: [] for r in REGEXES}}
    for v, m in models.items():
        tps = new_tokens / best[v]
        params = sum(p.numel() for p in m.parameters())
        print(f"{v:>6} {params / 1e6:>7.2f}M {tps:>9.0f} | " + " ".join(f"{tps * cpt[r, v]:>14,.0f}" for r in REGEXES))
        result["params"].append(params)
        result["tokens_per_s"].append(tps)
        for r in REGEXES:
            result["chars_per_s"][r].append(tps * cpt[r, v])
    return result


def plot_study(result: dict, path: Path, note: str = "") -> None:
    """--study's two tables as two panels: bytes/token per regex against vocabulary size, and
    characters/s of the tiny-code-shaped decoders. matplotlib (the `docs` extra) is imported here."""
    plt = pyplot()

    sizes = result["sizes"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    for regex, values in result["bytes_per_token"].items():
        left.plot(sizes, values, marker="o", label=regex)
    left.set(xscale="log", xlabel="vocabulary size", ylabel="held-out bytes / token (higher is better)",
             title="compression per pre-tokenization regex")
    left.set_xticks(sizes, [str(v) for v in sizes])
    left.minorticks_off()
    width = 0.8 / len(result["chars_per_s"])
    for j, (regex, values) in enumerate(result["chars_per_s"].items()):
        right.bar([i + (j - (len(result["chars_per_s"]) - 1) / 2) * width for i in range(len(sizes))], values,
                  width, label=regex)
    right.set_xticks(range(len(sizes)), [f"{v}\n{t:.0f} tok/s" for v, t in zip(sizes, result["tokens_per_s"])])
    right.set(xlabel="vocabulary size", ylabel="characters of code / s", title="decode speed, tiny-code shape")
    light_grid((left, right), "y")
    for ax in (left, right):
        ax.legend(fontsize=9)
    save(fig, path, note, note_y=-0.1, tight=False)


def shape_params(vocab_size: int) -> dict[str, tuple[int, int]]:
    """Per shape: (total parameters, embedding + output parameters), untied as in LLaMA."""
    out = {}
    for name, shape in SHAPES.items():
        total = zoo.compile("llama-2-7b", shape + [f"arch.vocab_size={vocab_size}"]).accounting.params
        dim = int(shape[0].split("=")[1])
        out[name] = (total, 2 * vocab_size * dim)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE, help="the code tokenizer's size")
    ap.add_argument("--tokenizer", default=None, help="load this tokenizer.json instead of training")
    ap.add_argument("--out", default=None, help="save the trained code tokenizer into this folder")
    ap.add_argument("--llama", default=None, help="a real LLaMA tokenizer.model to add as a row")
    ap.add_argument("--no-sweep", action="store_true", help="skip the vocabulary-size sweep")
    ap.add_argument("--study", action="store_true", help="only the regex x vocabulary study with decode speed")
    ap.add_argument("--study-sizes", default="1024,4096,16384", help="vocabulary sizes of --study")
    add_figure_args(ap, "the tables of --study", run="measuring")
    args = ap.parse_args()
    if redraw(ap, args, plot_study):
        return
    start = time.perf_counter()

    root = Path(sysconfig.get_paths()["stdlib"])
    train_files, held_files = split_corpus(root)
    train_texts, held_texts = read(train_files), read(held_files)
    held_bytes = sum(len(t.encode()) for t in held_texts)
    print(f"corpus: {root}  train {len(train_files)} files {sum(len(t.encode()) for t in train_texts) / 1e6:.1f} MB, "
          f"held out {len(held_files)} files {held_bytes / 1e6:.2f} MB (sha256(path) % 10 == 0)")
    if args.study:
        result = study(train_texts, held_texts, [int(v) for v in args.study_sizes.split(",")])
        emit(args, result, plot_study)
        print(f"\n({time.perf_counter() - start:.0f} s)")
        return
    print("note: the real LLaMA tokenizer.model is not downloadable here (no internet); the LLaMA rows are "
          "SentencePiece BPE trained the LLaMA way on the same files\n")

    rows: list[tuple[str, int, float, float, bool]] = []

    def measure(name: str, encode, decode, vocab: int, seconds: float) -> float:  # type: ignore[no-untyped-def]
        n = sum(len(encode(t)) for t in held_texts)
        ok = all(decode(encode(t)) == t for t in held_texts[:20])
        rows.append((name, vocab, held_bytes / n, seconds, ok))
        return held_bytes / n

    def code(vocab: int, save: str | None = None) -> float:
        t = time.perf_counter()
        if args.tokenizer and vocab == args.vocab_size:
            tok = BPETokenizer.from_file(args.tokenizer)
        else:
            tok = train_code_tokenizer([], vocab, save, texts=train_texts)
        return measure(f"code BPE (ours){' *' if vocab == args.vocab_size else ''}",
                       lambda s: tok.encode(s, bos=False), tok.decode, tok.vocab_size, time.perf_counter() - t)

    lines = [line for t in train_texts for line in t.split("\n") if line.strip()]
    for vocab in (32000, args.vocab_size):
        t = time.perf_counter()
        sp = train_spm(lines, vocab)
        measure("LLaMA-style SentencePiece BPE", sp.encode, sp.decode, sp.vocab_size(), time.perf_counter() - t)  # type: ignore[attr-defined]
    if args.llama:
        import sentencepiece as spm

        real = spm.SentencePieceProcessor(model_file=args.llama)
        measure("LLaMA tokenizer.model (given)", real.encode, real.decode, real.vocab_size(), 0.0)
    t0 = time.perf_counter()
    gpt4 = train_code_tokenizer([], args.vocab_size, texts=train_texts, pattern=GPT4_PATTERN)
    measure("byte BPE, GPT-4 regex", lambda s: gpt4.encode(s, bos=False), gpt4.decode, gpt4.vocab_size,
            time.perf_counter() - t0)
    ratios = {}
    sizes = [] if args.no_sweep else list(SWEEP)
    if args.vocab_size not in sizes:
        sizes.append(args.vocab_size)
    for vocab in sorted(sizes):
        ratios[vocab] = code(vocab, args.out if vocab == args.vocab_size else None)

    print(f"{'tokenizer':<32} {'vocab':>6} {'bytes/token':>11} {'train s':>8}  round trip")
    for name, vocab, bpt, sec, ok in rows:
        print(f"{name:<32} {vocab:>6} {bpt:>11.3f} {sec:>8.1f}  {'exact' if ok else 'LOSSY'}")
    print("  * the chosen vocabulary size")

    print("\nvocabulary size vs model size (LLaMA shapes, untied embedding + output = 2*V*dim):")
    print("  d256 = dim 256, 6 layers, ffn 704; d384 = dim 384, 8 layers, ffn 1024; "
          "MACs/byte = (params - embedding) / (bytes/token): forward compute per byte of code")
    print(f"{'vocab':>6} {'bytes/tok':>9} | {'d256 params':>11} {'emb+out':>7} {'MACs/B':>7} | "
          f"{'d384 params':>11} {'emb+out':>7} {'MACs/B':>7}")
    for vocab, bpt in sorted(ratios.items()):
        cells = []
        for total, emb in shape_params(vocab).values():
            cells.append(f"{total / 1e6:>10.2f}M {emb / total:>7.0%} {(total - emb / 2) / bpt / 1e6:>6.2f}M")
        print(f"{vocab:>6} {bpt:>9.3f} | {cells[0]} | {cells[1]}")
    if args.out:
        print(f"\nsaved the code tokenizer to {Path(args.out) / 'tokenizer.json'}")
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
