"""`zoo btx`: Branch-Train-MiX from the command line (docs/btx.md).

    zoo btx branch runs/seed -n 3 ./experts          # experts/expert-0..2: copies of the seed
    zoo btx train experts/expert-0 --data code.bin --steps 2000 --out runs/expert-0   # one job per expert
    zoo btx train-all ./experts --data code.bin c.bin prose.bin --steps 2000 --out runs --procs 3
    zoo btx mix runs/expert-* --out ./btx --top-k 2  # FFNs -> MoE experts, the rest averaged
    zoo train ./btx --data mix.bin --steps 1000 --out runs/btx-ft                 # MoE finetune
    zoo btx mix runs/expert-* --out ./btm --mode btm               # Branch-Train-Merge (average)
    zoo btx mix runs/seed --out ./up --mode upcycle --n-experts 4  # sparse upcycling
"""

from __future__ import annotations

import argparse
from typing import Any

from ..recipes.btx import MergeError, branch, mix
from ..recipes.btx_train import (
    ExpertRecipe,
    add_recipe_options,
    train_all,
    train_expert,
    train_on_rank,
)


def cmd_branch(args: argparse.Namespace) -> int:
    paths = branch(args.seed, args.n, args.out, prefix=args.prefix, overwrite=args.overwrite,
                   progress=False if args.no_progress else None, revision=args.revision, token=args.token)
    for p in paths:
        print(p)
    return 0


def _floats(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise MergeError(f"--weights {text!r}: expected numbers separated by commas, e.g. 0.5,0.25,0.25") from None


def cmd_mix(args: argparse.Namespace) -> int:
    model = mix(args.sources, mode=args.mode, top_k=args.top_k, n_experts=args.n_experts,
                weights=_floats(args.weights), aux_loss_coef=args.aux_loss_coef, router_init=args.router_init,
                router_std=args.router_std, seed=args.seed, name=args.name, dtype=args.dtype,
                progress=False if args.no_progress else None)
    path = model.save(args.out, overwrite=args.overwrite, progress=False if args.no_progress else None)
    acc = model.compiled.accounting
    print(f"{model.spec.name}: {model.spec.arch.block(0).ffn.describe()}; {acc.params:,} parameters "
          f"({acc.active_params:,} active per token)")
    print(f"wrote {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    out = train_expert(args.expert, args.data, args.out, ExpertRecipe.from_args(args), overwrite=args.overwrite,
                       threads=args.threads, progress=False if args.no_progress else None)
    print(f"trained {args.expert} -> {out}")
    return 0


def cmd_train_all(args: argparse.Namespace) -> int:
    recipe = ExpertRecipe.from_args(args)
    if args.ranks_per_expert is not None:
        done = train_on_rank(args.experts, args.data, args.out, recipe, ranks_per_expert=args.ranks_per_expert,
                             threads=args.threads, prefix=args.prefix, overwrite=args.overwrite,
                             skip_done=args.skip_done, progress=False if args.no_progress else None)
    else:
        done = train_all(args.experts, args.data, args.out, recipe, procs=args.procs, threads=args.threads,
                         prefix=args.prefix, overwrite=args.overwrite, skip_done=args.skip_done,
                         timeout=args.timeout)
    for p in done:
        print(p)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("btx", help="Branch-Train-MiX: branch a seed into experts, mix trained experts into an MoE",
                       description="Branch-Train-MiX (Sukhbaatar et al. 2024) and its special cases, Branch-Train-"
                                   "Merge (parameter average) and sparse upcycling. Train the branches with `zoo "
                                   "btx train` (one job each) or `zoo btx train-all` (one process each); "
                                   "MoE-finetune the mixed folder with `zoo train`.")
    bsub = p.add_subparsers(dest="btx_command", required=True)

    b = bsub.add_parser("branch", help="N copies of a seed checkpoint as OUT/expert-0..N-1")
    b.add_argument("seed", help="a checkpoint folder, a training run (newest step), a catalog name or Hub repo")
    b.add_argument("out", help="folder to hold the copies")
    b.add_argument("-n", "--n", type=int, required=True, help="number of copies (experts)")
    b.add_argument("--prefix", default="expert", help="copy names: PREFIX-0, PREFIX-1, … (default: expert)")
    b.add_argument("--overwrite", action="store_true", help="replace existing copies")
    b.add_argument("--revision", default=None, help="Hub seed: branch, tag or commit")
    b.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the stored login)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_branch)

    t = bsub.add_parser("train", help="train ONE expert (one job: run one per expert, anywhere)",
                        description="Fine-tune one branch on its domain; the run folder (step-* checkpoints, "
                                    "metrics.jsonl) is written atomically to --out, which `zoo btx mix` reads.")
    t.add_argument("expert", help="a branch from `zoo btx branch` (checkpoint folder or training run)")
    t.add_argument("--data", required=True, help="this expert's token file")
    t.add_argument("--out", required=True, help="run folder to write (atomically)")
    _job_options(t)
    t.set_defaults(func=cmd_train)

    a = bsub.add_parser("train-all", help="train every expert, one OS process each (or one torchrun rank each)",
                        description="Train EXPERTS/expert-i on the i-th --data file in its own process, at most "
                                    "--procs at once, writing OUT/expert-i atomically and OUT/logs/expert-i.log. "
                                    "Under torchrun, --ranks-per-expert 1: rank r trains expert r, no communication.")
    a.add_argument("experts", help="the folder `zoo btx branch` wrote (expert-0 … expert-N-1)")
    a.add_argument("--data", nargs="+", required=True, help="one token file per expert, in expert order")
    a.add_argument("--out", required=True, help="folder for the trained runs OUT/expert-i")
    a.add_argument("--procs", type=int, default=1, help="experts trained at once (default 1)")
    a.add_argument("--ranks-per-expert", type=int, default=None,
                   help="under torchrun: ranks per expert (only 1: rank r trains experts r, r+W, …)")
    a.add_argument("--prefix", default="expert", help="expert folder names PREFIX-i (default: expert)")
    a.add_argument("--timeout", type=float, default=None, help="kill a job running longer (seconds): it fails")
    a.add_argument("--skip-done", action="store_true", help="skip experts whose OUT/expert-i run exists")
    _job_options(a)
    a.set_defaults(func=cmd_train_all)

    m = bsub.add_parser("mix", help="merge trained experts: an MoE (btx, upcycle) or a parameter average (btm)")
    m.add_argument("sources", nargs="+", help="expert checkpoints or training runs (newest step); expert i = "
                                              "source i")
    m.add_argument("--out", required=True, help="output checkpoint folder (written atomically)")
    m.add_argument("--mode", choices=["btx", "btm", "upcycle"], default="btx",
                   help="btx: FFNs become experts, the rest averaged; btm: average every parameter; upcycle: "
                        "experts are copies of ONE model's FFN (default: btx)")
    m.add_argument("--top-k", type=int, default=2, help="experts per token (default 2)")
    m.add_argument("--n-experts", type=int, default=None, help="upcycle: number of experts")
    m.add_argument("--weights", default=None, help="averaging weights, one per source (default: uniform)")
    m.add_argument("--aux-loss-coef", type=float, default=0.01, help="load-balancing loss weight (default 0.01)")
    m.add_argument("--router-init", choices=["normal", "zero"], default="normal",
                   help="new router weights: N(0, std^2) (default) or zeros (uniform routing)")
    m.add_argument("--router-std", type=float, default=0.02, help="std of --router-init normal (default 0.02)")
    m.add_argument("--seed", type=int, default=0, help="router init seed")
    m.add_argument("--name", default=None, help="the mixed model's spec name")
    m.add_argument("--dtype", default=None, help="float32, bfloat16 … (default: the first source's)")
    m.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    m.add_argument("--no-progress", action="store_true", help="no progress bar")
    m.set_defaults(func=cmd_mix)


def _job_options(p: Any) -> None:
    add_recipe_options(p)
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads per job (train-all default: CPU count / --procs)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing trained run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
