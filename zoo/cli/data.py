"""`zoo data embed | corrupt | prune`: SCIP (Yang et al. 2023) on a folder of code files
(docs/data.md).

    zoo data embed ./corpus --model tiny-code --out emb/
    zoo data corrupt ./corpus --out corrupted/
    zoo data prune ./corpus --embeddings emb/ --clusters 100 --prune 0.2 --out kept.txt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .errors import CLIError


def _suffixes(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(e if e.startswith(".") else f".{e}" for e in (args.ext or [".py"]))


def cmd_embed(args: argparse.Namespace) -> int:
    from .. import api
    from ..data.embed import embed_corpus
    from ..tokenizer.train import corpus_files

    files = corpus_files(args.corpus, _suffixes(args))
    root = Path(args.corpus) if Path(args.corpus).is_dir() else Path(args.corpus).parent
    from ..data.hf_encoder import TransformersEncoder, is_encoder_folder

    if is_encoder_folder(args.model):  # BERT-like folders: transformers' AutoModel, not zoo's loader
        model = TransformersEncoder(args.model, device=args.device, dtype=args.dtype)
    else:
        model = api.load(args.model, device=args.device, dtype=args.dtype)
    emb = embed_corpus(model, root, files, args.out, batch_size=args.batch_size, max_tokens=args.max_tokens,
                       pooling=args.pooling, model_name=str(args.model), progress=not args.no_progress)
    print(f"wrote {Path(args.out) / 'embeddings.f32'}: {len(emb.files)} x {emb.vectors.shape[1]} float32")
    return 0


def cmd_corrupt(args: argparse.Namespace) -> int:
    import hashlib
    import random

    from ..data._io import output_folder
    from ..data.corrupt import KINDS, corrupt
    from ..tokenizer.train import corpus_files

    kinds = args.kinds.split(",") if args.kinds else list(KINDS)
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise CLIError(f"unknown corruption(s) {', '.join(bad)}", hint=f"choose among {', '.join(KINDS)}")
    if not 0 < args.rate <= 1 or not 0 < args.fraction <= 1:
        raise CLIError(f"--rate and --fraction must be in (0, 1], got {args.rate} and {args.fraction}")
    root = Path(args.corpus)
    files = corpus_files(root, _suffixes(args))
    base = root if root.is_dir() else root.parent
    rng = random.Random(args.seed)
    chosen = sorted(rng.sample(range(len(files)), max(1, round(args.fraction * len(files)))))
    manifest: dict[str, str] = {}
    with output_folder(args.out, args.overwrite, "corruptions.json") as tmp:
        for n, i in enumerate(chosen):
            rel = files[i].relative_to(base).as_posix()
            text = files[i].read_text(encoding="utf-8", errors="replace")
            seed = int(hashlib.sha256(f"{args.seed}:{rel}".encode()).hexdigest(), 16) % 2**32
            order = kinds[n % len(kinds):] + kinds[:n % len(kinds)]  # round robin, next kind when none applies
            for kind in order:
                out = corrupt(text, kind, rate=args.rate, seed=seed)
                if out is not None:
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    (tmp / rel).write_text(out, encoding="utf-8")
                    manifest[rel] = kind
                    break
        (tmp / "corruptions.json").write_text(json.dumps(manifest, indent=1) + "\n")
    counts = {k: sum(v == k for v in manifest.values()) for k in kinds}
    print(f"wrote {len(manifest)} corrupted files to {args.out} (" + ", ".join(f"{k} {n}" for k, n in counts.items())
          + "); corruptions.json names each file's corruption")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from ..data._io import write_text_atomic
    from ..data.embed import load_embeddings
    from ..data.prune import scip_prune

    emb = load_embeddings(args.embeddings)
    root = Path(args.corpus)
    missing = [f for f in emb.files[:1000] if not (root / f).is_file()]
    if missing:
        raise CLIError(f"{args.embeddings} lists files that are not under {root}, e.g. {missing[0]}",
                       hint="give the corpus folder the embeddings were made from")
    result = scip_prune(emb.vectors, args.clusters, args.prune, size_share=args.size_share, seed=args.seed)
    kept = [str(root / f) for f, k in zip(emb.files, result.keep) if k]
    write_text_atomic(args.out, "".join(f"{p}\n" for p in kept))
    small = int((result.reason == "small cluster").sum())
    far = int((result.reason == "far from centroid").sum())
    print(f"kept {len(kept)} of {len(emb.files)} files ({small} dropped from the smallest clusters, {far} farthest "
          f"from their centroid); wrote {args.out}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("data", help="SCIP: embed a code corpus, corrupt it synthetically, prune it by embeddings",
                       description="Embedding-guided pruning of code data (SCIP, Yang et al. 2023): file embeddings "
                                   "from a zoo model, the paper's synthetic corruptions, and k-means pruning of "
                                   "small clusters and files far from their centroid.")
    dsub = p.add_subparsers(dest="data_command", required=True)

    e = dsub.add_parser("embed", help="mean-pooled hidden states of every file (memory-mapped float32 + index)",
                        description="Run a zoo model over every file (first --max-tokens tokens, in batches) and "
                                    "pool its final hidden states into one vector per file: OUT/embeddings.f32 "
                                    "(N x dim float32, memory-mapped) and OUT/index.json (the files). An "
                                    "interrupted run resumes where it stopped.")
    e.add_argument("corpus", help="a folder of files (searched recursively)")
    e.add_argument("--model", required=True, help="a checkpoint folder, catalog name (e.g. tiny-code) or Hub repo; "
                   "or a transformers encoder folder (BERT, RoBERTa, ...: needs transformers)")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--batch-size", type=int, default=8, help="files per forward pass (default 8)")
    e.add_argument("--max-tokens", type=int, default=512, help="tokens read from each file (default 512)")
    e.add_argument("--pooling", choices=["mean", "last"], default="mean", help="over the file's tokens (default mean)")
    e.add_argument("--ext", action="append", metavar="SUFFIX", help="file suffix to read (repeatable; default .py)")
    e.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default cpu)")
    e.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: the checkpoint's)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_embed)

    c = dsub.add_parser("corrupt", help="write synthetically corrupted copies of code files",
                        description="SCIP's synthetic corruptions. Syntax: remove_closing_bracket, remove_colon, "
                                    "rename_variable. Content: remove_lines, swap_lines, break_indentation, "
                                    "off_by_one, flip_comparison. Each chosen file gets one kind (round robin); "
                                    "OUT/corruptions.json maps each file to its kind. Written atomically.")
    c.add_argument("corpus", help="a folder of files (searched recursively)")
    c.add_argument("--out", required=True, help="output folder (same relative paths)")
    c.add_argument("--kinds", default=None, help="comma-separated corruptions (default: all)")
    c.add_argument("--rate", type=float, default=0.05, help="fraction of a file's sites hit, at least one "
                                                            "(default 0.05)")
    c.add_argument("--fraction", type=float, default=1.0, help="fraction of the files corrupted (default 1)")
    c.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    c.add_argument("--ext", action="append", metavar="SUFFIX", help="file suffix to read (repeatable; default .py)")
    c.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    c.set_defaults(func=cmd_corrupt)

    r = dsub.add_parser("prune", help="SCIP: drop small-cluster and far-from-centroid files, list the kept ones",
                        description="k-means (scikit-learn) on the normalized embeddings; the --prune budget goes "
                                    "--size-share to the smallest clusters (whole, smallest first) and the rest to "
                                    "the files farthest from their centroid (cosine distance). Writes the kept "
                                    "files' paths, one a line.")
    r.add_argument("corpus", help="the corpus folder the embeddings were made from")
    r.add_argument("--embeddings", required=True, help="a folder written by `zoo data embed`")
    r.add_argument("--clusters", type=int, required=True, help="k of k-means")
    r.add_argument("--prune", type=float, default=0.2, help="fraction of files to drop (default 0.2)")
    r.add_argument("--size-share", type=float, default=0.5,
                   help="share of the budget taken from the smallest clusters; the rest by distance (default 0.5)")
    r.add_argument("--seed", type=int, default=0, help="k-means seed (default 0)")
    r.add_argument("--out", required=True, help="the kept paths, one a line (written atomically)")
    r.set_defaults(func=cmd_prune)
