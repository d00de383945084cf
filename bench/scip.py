"""SCIP's embedding-space analysis at small scale (docs/data.md): do synthetically corrupted
Python files land in smaller clusters and farther from their centroids than clean ones?

    .venv/bin/python bench/scip.py                 # stdlib training split, tiny-code embeddings
    .venv/bin/python bench/scip.py --fraction 0.3 --rate 0.1 --clusters 20
    .venv/bin/python bench/scip.py --json r.json --plot r.png             # figures saved and drawn
    .venv/bin/python bench/scip.py --from-json r.json --plot r.png        # redrawn, nothing run

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
from bench.figure import add_figure_args, emit, light_grid, pyplot, redraw, save  # noqa: E402
from zoo.data import KINDS, cluster, corrupt, embed_corpus, scip_prune  # noqa: E402
from zoo.data.prune import normalize  # noqa: E402
from zoo.recipes.tiny_code import split_corpus  # noqa: E402


def build_corpus(train: list[Path], root: Path, fraction: float, rate: float, seed: int) -> dict[str, str]:
    """root/corpus: every file of `train` once, a seeded `fraction` of them corrupted (one kind
    per file, round robin over KINDS, `rate` of its sites); root/originals: the clean originals
    of the corrupted ones. Returns {corpus file name: "clean" or the corruption kind}."""
    corpus = root / "corpus"
    rng = random.Random(seed)
    chosen = set(rng.sample(range(len(train)), round(fraction * len(train))))
    label: dict[str, str] = {}
    n = 0
    for i, f in enumerate(train):
        rel = hashlib.sha256(str(f).encode()).hexdigest()[:8] + "_" + f.name
        text = f.read_text(encoding="utf-8", errors="replace")
        kind = "clean"
        if i in chosen:
            for k in KINDS[n % len(KINDS):] + KINDS[:n % len(KINDS)]:
                out = corrupt(text, k, rate=rate, seed=seed + i)
                if out is not None:
                    text, kind = out, k
                    break
            n += 1
        (corpus / rel).parent.mkdir(parents=True, exist_ok=True)
        (corpus / rel).write_text(text, encoding="utf-8")
        label[rel] = kind
        if kind != "clean":  # its clean original, for the paired analysis
            (root / "originals").mkdir(parents=True, exist_ok=True)
            (root / "originals" / rel).write_text(f.read_text(encoding="utf-8", errors="replace"), encoding="utf-8")
    return label


def plot_scip(result: dict, path: Path, note: str = "") -> None:
    """The two tables main prints: per group, the shares in the smallest clusters, among the
    farthest and removed by SCIP (unpaired); per corruption, the share farther from its centroid
    than its own clean original (paired). matplotlib (the `docs` extra) is imported here."""
    plt = pyplot()

    un, pa = result["unpaired"], result["paired"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6), dpi=110, gridspec_kw={"width_ratios": [3, 2]})
    cols = (("in_small", "in the smallest clusters (10% of files)"), ("far", "among the 10% farthest"),
            ("pruned", f"removed by SCIP at {result['prune']:.0%}"))
    for j, (key, label) in enumerate(cols):
        left.barh([i + (j - 1) * 0.27 for i in range(len(un))], [100 * r[key] for r in un], 0.27, label=label)
    left.set_yticks(range(len(un)), [f"{r['name']} (n={r['n']})" for r in un])
    left.invert_yaxis()
    left.set(xlabel="% of the group", title="unpaired: where each group lands")
    left.legend(fontsize=8, loc="lower right")
    right.barh(range(len(pa)), [100 * r["farther"] for r in pa], 0.6, color="#8c6bb1")
    right.axvline(50, color="#555555", linestyle="--", linewidth=1)
    right.set_yticks(range(len(pa)), [f"{r['name']} (n={r['n']})" for r in pa])
    right.invert_yaxis()
    right.set(xlabel="% farther from its centroid than its clean original", xlim=(0, 100),
              title="paired: does a corrupted file move?")
    light_grid((left, right), "x")
    save(fig, path, note)


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
    add_figure_args(ap, "both tables")
    args = ap.parse_args()
    if redraw(ap, args, plot_scip):
        return

    train, _ = split_corpus()
    train = train[:args.limit] if args.limit else train
    root = Path(args.work or tempfile.mkdtemp(prefix="scip-"))
    corpus = root / "corpus"
    label = build_corpus(train, root, args.fraction, args.rate, args.seed)
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
    result: dict = {"prune": args.prune, "rate": args.rate, "clusters": args.clusters, "unpaired": [], "paired": []}
    groups = [("clean", kinds == "clean"), ("corrupted (all kinds)", kinds != "clean")]
    groups += [(f"  {k}", kinds == k) for k in KINDS]
    for name, m in groups:
        if m.sum() == 0:
            continue
        print(f"| {name} | {int(m.sum())} | {in_small[m].mean():.1%} | {c.distance[m].mean():.4f} | "
              f"{far[m].mean():.1%} | {pruned[m].mean():.1%} |")
        result["unpaired"].append({"name": name.strip(), "n": int(m.sum()), "in_small": float(in_small[m].mean()),
                                   "distance": float(c.distance[m].mean()), "far": float(far[m].mean()),
                                   "pruned": float(pruned[m].mean())})

    # paired: k-means on the all-clean corpus; each corrupted file against its own clean original
    orig = embed_corpus(model, root / "originals", sorted((root / "originals").glob("*.py")), root / "emb-orig",
                        batch_size=args.batch_size, max_tokens=args.max_tokens, progress=False)
    row = {f: i for i, f in enumerate(emb.files)}
    clean = np.array(emb.vectors)
    for i, f in enumerate(orig.files):
        clean[row[f]] = orig.vectors[i]
    cc = cluster(clean, args.clusters, seed=args.seed)
    sizes = np.bincount(cc.labels, minlength=args.clusters)
    bad = normalize(np.asarray(emb.vectors))
    sims = bad @ cc.centroids.T
    near = sims.argmax(1)
    d_bad = 1.0 - sims.max(1)
    print(f"\n# paired: k-means (k={args.clusters}) on the corpus with every file clean; each corrupted file "
          "assigned to its nearest centroid and compared with its own clean original\n")
    print("| corruption | n | farther from its centroid than the original | mean change in cosine distance | "
          "in a smaller cluster than the original | in a larger one |")
    print("|---|---:|---:|---:|---:|---:|")
    idx = np.array([row[f] for f in orig.files])
    for name in ["all kinds"] + list(KINDS):
        sel = idx if name == "all kinds" else idx[kinds[idx] == name]
        if len(sel) == 0:
            continue
        farther = d_bad[sel] > cc.distance[sel]
        delta = d_bad[sel] - cc.distance[sel]
        smaller = sizes[near[sel]] < sizes[cc.labels[sel]]
        larger = sizes[near[sel]] > sizes[cc.labels[sel]]
        print(f"| {name} | {len(sel)} | {farther.mean():.1%} | {delta.mean():+.4f} | {smaller.mean():.1%} | "
              f"{larger.mean():.1%} |")
        result["paired"].append({"name": name, "n": len(sel), "farther": float(farther.mean()),
                                 "delta": float(delta.mean()), "smaller": float(smaller.mean()),
                                 "larger": float(larger.mean())})
    emit(args, result, plot_scip)


if __name__ == "__main__":
    main()
