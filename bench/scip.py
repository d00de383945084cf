"""SCIP's embedding-space analysis at small scale (docs/data.md): do synthetically corrupted
Python files land in smaller clusters and farther from their centroids than clean ones?

    .venv/bin/python bench/scip.py                 # stdlib training split, tiny-code embeddings
    .venv/bin/python bench/scip.py --fraction 0.3 --rate 0.1 --clusters 20

Corpus: the standard library's training split (zoo.recipes.tiny_code.split_corpus). A seeded
`--fraction` of the files is replaced by a corrupted version (one corruption kind per file,
round robin over zoo.data.KINDS), so every file is there once, clean or corrupted. Embeddings:
tiny-code, mean-pooled final hidden states of each file's first `--max-tokens` tokens. Then
spherical k-means (scikit-learn) and, per group (clean, corrupted, each kind): the share in
the smallest clusters that together hold 10% of the files, the mean cosine distance to the
centroid, the share among the 10% farthest files, and the share SCIP's 20% prune removes.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo  # noqa: E402
from zoo.data import KINDS, corrupt, embed_corpus, scip_prune  # noqa: E402
from zoo.recipes.tiny_code import split_corpus  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fraction", type=float, default=0.25, help="share of files corrupted")
    ap.add_argument("--rate", type=float, default=0.1, help="share of a file's sites each corruption hits")
    ap.add_argument("--clusters", type=int, default=20)
    ap.add_argument("--prune", type=float, default=0.2)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N files (a quick run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None, help="keep the corpus and embeddings here (default: a temp folder)")
    args = ap.parse_args()

    train, _ = split_corpus()
    train = train[:args.limit] if args.limit else train
    root = Path(args.work or tempfile.mkdtemp(prefix="scip-"))
    corpus = root / "corpus"
    rng = random.Random(args.seed)
    chosen = set(rng.sample(range(len(train)), round(args.fraction * len(train))))
    label: dict[str, str] = {}
    n = 0
    for i, f in enumerate(train):
        rel = hashlib.sha256(str(f).encode()).hexdigest()[:8] + "_" + f.name
        text = f.read_text(encoding="utf-8", errors="replace")
        kind = "clean"
        if i in chosen:
            for k in KINDS[n % len(KINDS):] + KINDS[:n % len(KINDS)]:
                out = corrupt(text, k, rate=args.rate, seed=args.seed + i)
                if out is not None:
                    text, kind = out, k
                    break
            n += 1
        (corpus / rel).parent.mkdir(parents=True, exist_ok=True)
        (corpus / rel).write_text(text, encoding="utf-8")
        label[rel] = kind
    model = zoo.load("tiny-code", dtype="float32")
    t0 = time.perf_counter()
    emb = embed_corpus(model, corpus, sorted(corpus.glob("*.py")), root / "emb", batch_size=args.batch_size,
                       max_tokens=args.max_tokens, progress=False)
    print(f"# {len(emb.files)} files ({sum(v != 'clean' for v in label.values())} corrupted, rate {args.rate}), "
          f"embedded in {time.perf_counter() - t0:.0f} s; k-means k={args.clusters}")
    kinds = np.array([label[f] for f in emb.files])
    res = scip_prune(np.asarray(emb.vectors), args.clusters, args.prune, seed=args.seed)
    c = res.clusters
    counts = np.bincount(c.labels, minlength=args.clusters)
    small, total = set(), 0
    for cid in np.argsort(counts, kind="stable"):
        if total >= 0.1 * len(kinds):
            break
        small.add(int(cid))
        total += counts[cid]
    in_small = np.isin(c.labels, list(small))
    far = c.distance >= np.quantile(c.distance, 0.9)
    pruned = ~res.keep
    print(f"# smallest clusters holding >= 10% of files: {len(small)} clusters, {int(in_small.sum())} files\n")
    print("| files | n | in smallest clusters (10% of files) | mean cosine distance to centroid | "
          f"among the 10% farthest | removed by SCIP at {args.prune:.0%} |")
    print("|---|---:|---:|---:|---:|---:|")
    groups = [("clean", kinds == "clean"), ("corrupted (all kinds)", kinds != "clean")]
    groups += [(f"  {k}", kinds == k) for k in KINDS]
    for name, m in groups:
        if m.sum() == 0:
            continue
        print(f"| {name} | {int(m.sum())} | {in_small[m].mean():.1%} | {c.distance[m].mean():.4f} | "
              f"{far[m].mean():.1%} | {pruned[m].mean():.1%} |")


if __name__ == "__main__":
    main()
