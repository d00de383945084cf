"""SCIP's downstream check at small scale (docs/data.md): small models trained for the same number
of tokens on the unpruned corpus, on the SCIP-pruned one and on a randomly pruned one (the
control: the same number of files removed at random), then their loss on held-out clean code.

    .venv/bin/python bench/scip_downstream.py                      # the table (~10 minutes on 2 cores)
    .venv/bin/python bench/scip_downstream.py --steps 40 --limit 120 --seeds 1   # a smoke run
    .venv/bin/python bench/scip_downstream.py --json r.json --plot r.png         # figures saved and drawn
    .venv/bin/python bench/scip_downstream.py --from-json r.json --plot r.png    # redrawn, nothing run

Corpus: as bench/scip.py (the standard library's training split, a seeded `--fraction` of the
files corrupted at `--rate` of their sites). Embeddings: tiny-code, mean-pooled; SCIP: spherical
k-means (`--clusters`), `--prune` of the files removed, half by cluster size, half by distance.
Models: tiny-code's architecture shrunk by `--dim` / `--layers`, tiny-code's tokenizer, the same
random init per seed in every arm, `--steps` steps of `--batch` x `--seq-len` tokens (the same
tokens for every arm: pruned arms repeat nothing either, the corpus is larger than one pass).
Held-out: the recipe's held-out standard-library files (all clean), bits per byte.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo  # noqa: E402
from bench.figure import add_figure_args, emit, light_grid, pyplot, redraw, save  # noqa: E402
from bench.scip import build_corpus  # noqa: E402
from bench.tokenizer_swap import encode, finetune  # noqa: E402
from zoo.data import embed_corpus, scip_prune  # noqa: E402
from zoo.recipes.tiny_code import read_texts, split_corpus  # noqa: E402
from zoo.tokenizer.evaluate import held_out_loss  # noqa: E402

ARMS = ("unpruned", "SCIP-pruned", "randomly pruned")


def plot_downstream(result: dict, path: Path, note: str = "") -> None:
    """Held-out bits per byte of each arm (one dot per seed, the bar their mean) and the share of
    corrupted files left in each arm's training files. matplotlib (the `docs` extra) is imported here."""
    plt = pyplot()

    rows = result["rows"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110, gridspec_kw={"width_ratios": [3, 2]})
    means = [float(np.mean(r["bpb"])) for r in rows]
    left.barh(range(len(rows)), means, 0.6, color=["#8c8c8c", "#2b8cbe", "#fdae6b"][:len(rows)])
    for i, r in enumerate(rows):
        left.plot(r["bpb"], [i] * len(r["bpb"]), "k.", markersize=8)
        left.text(max(r["bpb"]), i, f"   mean {means[i]:.4f}", va="center", fontsize=8)
    lo, hi = min(min(r["bpb"]) for r in rows), max(max(r["bpb"]) for r in rows)
    pad = max(hi - lo, 1e-3)
    left.set_xlim(lo - pad, hi + 3 * pad)
    left.set_yticks(range(len(rows)), [r["arm"] for r in rows])
    left.invert_yaxis()
    left.set(xlabel="held-out bits per byte (clean code; lower is better)",
             title=f"{result['tokens']:,} training tokens per model")
    right.barh(range(len(rows)), [100 * r["corrupted_share"] for r in rows], 0.6, color="#8c6bb1")
    right.set_yticks(range(len(rows)), [r["arm"] for r in rows])
    right.invert_yaxis()
    right.set(xlabel="% of the arm's training files that are corrupted", title="corrupted files left after pruning")
    light_grid((left, right), "x")
    save(fig, path, note)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=600, help="the first N training files")
    ap.add_argument("--fraction", type=float, default=0.25, help="share of files corrupted")
    ap.add_argument("--rate", type=float, default=0.3, help="share of a file's sites each corruption hits")
    ap.add_argument("--clusters", type=int, default=20)
    ap.add_argument("--prune", type=float, default=0.2)
    ap.add_argument("--max-tokens", type=int, default=256, help="tokens of each file embedded")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seeds", type=int, default=2, help="training seeds per arm")
    ap.add_argument("--eval-tokens", type=int, default=32768)
    ap.add_argument("--seed", type=int, default=0, help="the corpus' corruption and the random prune")
    add_figure_args(ap)
    args = ap.parse_args()
    if redraw(ap, args, plot_downstream):
        return

    train, held_files = split_corpus()
    train = train[:args.limit]
    held = read_texts(held_files)
    root = Path(tempfile.mkdtemp(prefix="scip-downstream-"))
    label = build_corpus(train, root, args.fraction, args.rate, args.seed)
    corpus = root / "corpus"
    embedder = zoo.load("tiny-code", dtype="float32")
    t0 = time.perf_counter()
    emb = embed_corpus(embedder, corpus, sorted(corpus.glob("*.py")), root / "emb", max_tokens=args.max_tokens,
                       progress=False)
    files = list(emb.files)
    bad = np.array([label[f] != "clean" for f in files])
    keep_scip = scip_prune(np.asarray(emb.vectors), args.clusters, args.prune, seed=args.seed).keep
    n_drop = int((~keep_scip).sum())
    drop = set(random.Random(args.seed).sample(range(len(files)), n_drop))
    keep_random = np.array([i not in drop for i in range(len(files))])
    print(f"# {len(files)} files ({int(bad.sum())} corrupted at rate {args.rate}), embedded in "
          f"{time.perf_counter() - t0:.0f} s; SCIP (k={args.clusters}) and the random control each remove {n_drop}")
    arms = {"unpruned": np.ones(len(files), bool), "SCIP-pruned": keep_scip, "randomly pruned": keep_random}

    tok = embedder.tokenizer
    spec_over = [f"arch.dim={args.dim}", f"arch.n_layers={args.layers}", f"arch.ffn.hidden_dim={args.dim * 8 // 3 // 64 * 64}",
                 f"arch.attention.n_heads={max(1, args.dim // 64)}"]
    tokens = args.steps * args.batch * args.seq_len
    rows = []
    for arm in ARMS:
        keep = arms[arm]
        texts = [(corpus / f).read_text(encoding="utf-8") for f, k in zip(files, keep) if k]
        ids = encode(tok, texts)
        share = float(bad[keep].mean())
        bpbs = []
        for s in range(args.seeds):
            m = zoo.build(embedder.spec, spec_over, seed=s,
                          tokenizer=tok, dtype="float32")
            t0 = time.perf_counter()
            finetune(m, ids, args.steps, args.seq_len, args.batch, args.lr)
            bpb = held_out_loss(m, held, seq_len=args.seq_len, max_tokens=args.eval_tokens).bits_per_byte
            bpbs.append(bpb)
            print(f"# {arm}, seed {s}: {len(texts)} files, {len(ids):,} tokens available; trained in "
                  f"{time.perf_counter() - t0:.0f} s; held-out {bpb:.4f} bits/byte", flush=True)
        rows.append({"arm": arm, "files": len(texts), "corrupted_share": share, "available_tokens": int(len(ids)),
                     "bpb": bpbs})
    print(f"\n{tokens:,} training tokens per model ({args.steps} steps of {args.batch} x {args.seq_len}); "
          f"dim {args.dim}, {args.layers} layers; held-out: {len(held_files)} clean stdlib files, "
          f"{args.eval_tokens:,} tokens\n")
    print("| training data | files | corrupted among them | tokens available | held-out bits/byte (mean) | per seed |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['arm']} | {r['files']} | {r['corrupted_share']:.1%} | {r['available_tokens']:,} | "
              f"{np.mean(r['bpb']):.4f} | {', '.join(f'{b:.4f}' for b in r['bpb'])} |")
    result = {"tokens": tokens, "steps": args.steps, "prune": args.prune, "rate": args.rate, "rows": rows}
    emit(args, result, plot_downstream)


if __name__ == "__main__":
    main()
