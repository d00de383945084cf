"""Branch-Train-MiX at small scale: the paper's comparison (Sukhbaatar et al. 2024, Table 1's
shape) on three domains this machine has offline.

    OMP_NUM_THREADS=1 .venv/bin/python bench/btx.py --out runs/btx-bench          # ~1.5 h, see below
    OMP_NUM_THREADS=1 .venv/bin/python bench/btx.py --out /tmp/btx-quick --quick  # < 2 min smoke test

Domains (each split into train / held-out by a hash of the document's name, 1 in 10 held out):
  python   the interpreter's standard library (*.py outside test folders)
  c        C headers under /usr/include
  english  the GNU manuals in /usr/share/info (Texinfo prose; fallback: /usr/share/doc READMEs)
Training sets are cut to the same number of tokens, so the mix is 1/3 each.

Pipeline (the tokenizer is the repo's byte-level BPE, trained on the three training sets):
  seed      a small dense model trained on the mix for S0 steps
  experts   the seed branched 3 times (`zoo.recipes.btx.branch`), expert d trained S1 steps on domain d
  BTM       the experts' parameters averaged (no further training); BTM-ensemble: their
            next-token distributions averaged (3x inference cost)
  BTX       the experts mixed (`zoo.recipes.btx.mix`: FFNs -> top-2 MoE, rest averaged, new router),
            then MoE-finetuned S2 steps on the mix
  upcycle   the seed turned into a 3-expert top-2 MoE (copies of its FFN), finetuned on the mix
            for 3*S1 + S2 steps
  dense     the seed trained on the mix for 3*S1 + S2 more steps

Compute accounting, as in the paper: a method's tokens are everything trained on its way from
scratch, seed included: BTX = S0 + 3*S1 + S2 steps; upcycle and dense get the same; BTM stops at
S0 + 3*S1. Wall times add stages as run here (one after another); `wall_parallel_s` counts the
experts as trained side by side (the method's point). FLOPs ~ 3 x forward FLOPs per token
(`zoo` accounting, active parameters only) x tokens.

Writes OUT/results.json; `--plot PATH` also draws the losses as grouped bars with matplotlib
(the `docs` extra), and `--from-json OUT/results.json --plot PATH` redraws them without training.

Cost of the full preset (dim 128, 4 layers, vocab 2048, 8 x 256 tokens per step; 600 seed, 3 x 600
expert, 600 finetune steps; 2400 upcycle and 2400 dense steps): a probe on this 2-core machine
while two other trainings ran measured 1.25 s per dense and 1.84 s per MoE step at twice the
batch, so about 1.5 h on one thread (about 1.1 h with --no-dense).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo  # noqa: E402
from bench.figure import add_figure_args, light_grid, pyplot, redraw, save  # noqa: E402
from zoo.recipes.btx import Ensemble, branch, mix  # noqa: E402
from zoo.train import TokenStream, TrainConfig, Trainer  # noqa: E402

DOMAINS = ("python", "c", "english")


@dataclass
class Config:
    dim: int
    n_layers: int
    n_heads: int
    hidden: int
    vocab: int
    seq: int
    batch: int
    seed_steps: int
    expert_steps: int
    ft_steps: int
    train_chars: int  # per domain, before tokenization
    held_chars: int
    eval_batches: int
    lr: float = 3e-3
    branch_lr: float = 1e-3  # experts and finetunes continue a trained model: a lower peak
    top_k: int = 2


FULL = Config(dim=128, n_layers=4, n_heads=4, hidden=352, vocab=2048, seq=256, batch=8, seed_steps=600,
              expert_steps=600, ft_steps=600, train_chars=6_000_000, held_chars=400_000, eval_batches=16)
QUICK = Config(dim=64, n_layers=2, n_heads=2, hidden=176, vocab=512, seq=64, batch=8, seed_steps=40,
               expert_steps=20, ft_steps=20, train_chars=250_000, held_chars=30_000, eval_batches=4)


# ------------------------------------------------------------------------------ data
def _held(name: str) -> bool:
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % 10 == 0


def _order(names: list[str]) -> list[str]:
    """A fixed pseudo-random order (by hash), so a character budget samples the whole domain."""
    return sorted(names, key=lambda n: hashlib.sha256(n.encode()).hexdigest())


def python_docs() -> dict[str, Callable[[], str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in root.rglob("*.py") if not ({"test", "tests", "idle_test"} & set(p.relative_to(root).parts))
             and "site-packages" not in p.parts]
    return {p.relative_to(root).as_posix(): (lambda p=p: p.read_text(encoding="utf-8", errors="replace"))
            for p in files}


def c_docs() -> dict[str, Callable[[], str]]:
    root = Path("/usr/include")
    files = [p for p in root.rglob("*.h") if p.is_file() and 200 < p.stat().st_size < 200_000]
    return {p.relative_to(root).as_posix(): (lambda p=p: p.read_text(encoding="utf-8", errors="replace"))
            for p in files}


def english_docs() -> dict[str, Callable[[], str]]:
    """One document per Texinfo node of the GNU manuals (header line dropped, tag tables and
    indirect tables skipped); without /usr/share/info, READMEs under /usr/share/doc."""
    out: dict[str, Callable[[], str]] = {}
    for path in sorted(Path("/usr/share/info").glob("*.info*")):
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        for i, node in enumerate(raw.decode("utf-8", errors="replace").split("\x1f")):
            lines = node.strip("\n").split("\n")
            if not lines or lines[0].startswith(("Tag Table:", "Indirect:")) or "\nEnd Tag Table" in node:
                continue
            body = "\n".join(lines[1:] if lines[0].startswith("File:") else lines).strip()
            if len(body) > 200:
                out[f"{path.name}#{i}"] = (lambda b=body: b + "\n")
    if not out:
        for p in Path("/usr/share/doc").rglob("README*"):
            if p.is_file() and p.suffix not in (".gz", ".html"):
                out[str(p)] = (lambda p=p: p.read_text(encoding="utf-8", errors="replace"))
    return out


SOURCES = {"python": python_docs, "c": c_docs, "english": english_docs}


def collect(domain: str, train_chars: int, held_chars: int) -> tuple[list[str], list[str], int]:
    """(train texts, held-out texts, documents available) within the character budgets."""
    docs = SOURCES[domain]()
    train: list[str] = []
    held: list[str] = []
    sizes = {"train": 0, "held": 0}
    for name in _order(list(docs)):
        part, texts, budget = ("held", held, held_chars) if _held(name) else ("train", train, train_chars)
        if sizes[part] >= budget:
            if sizes["train"] >= train_chars and sizes["held"] >= held_chars:
                break
            continue
        text = docs[name]()
        texts.append(text)
        sizes[part] += len(text)
    return train, held, len(docs)


def prepare(folder: Path, cfg: Config) -> tuple[Any, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """Tokenizer + per-domain train/held token arrays in `folder` (reused when present)."""
    from zoo.runtime.tokenizers import BPETokenizer, train_code_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    stats_path = folder / "data.json"
    key = {"vocab": cfg.vocab, "train_chars": cfg.train_chars, "held_chars": cfg.held_chars}
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    if stats.get("key") == key and (folder / "tokenizer.json").is_file():  # made with these settings
        tok = BPETokenizer.from_file(folder / "tokenizer.json")
        load = lambda n: np.load(folder / n)  # noqa: E731
        return tok, {d: load(f"{d}.train.npy") for d in DOMAINS}, {d: load(f"{d}.held.npy") for d in DOMAINS}, stats
    texts = {d: collect(d, cfg.train_chars, cfg.held_chars) for d in DOMAINS}
    sample = [t for d in DOMAINS for t in texts[d][0]]
    tok = train_code_tokenizer([], vocab_size=cfg.vocab, out=folder, texts=sample)
    train, held, stats = {}, {}, {"key": key, "domains": {}}
    for d in DOMAINS:
        tr, he, n_docs = texts[d]
        train[d] = np.asarray([i for ids in tok.encode_batch(tr, bos=False, eos=True) for i in ids], dtype=np.uint16)
        held[d] = np.asarray([i for ids in tok.encode_batch(he, bos=False, eos=True) for i in ids], dtype=np.uint16)
        stats["domains"][d] = {"documents": n_docs, "train_docs": len(tr), "held_docs": len(he),
                               "train_chars": sum(map(len, tr)), "held_chars": sum(map(len, he)),
                               "chars_per_token": round(sum(map(len, tr)) / max(1, len(train[d])), 3)}
    n = min(len(a) for a in train.values())  # balanced mix: the same number of tokens per domain
    for d in DOMAINS:
        train[d] = train[d][:n]
        stats["domains"][d].update(train_tokens=len(train[d]), held_tokens=len(held[d]))
        np.save(folder / f"{d}.train.npy", train[d])
        np.save(folder / f"{d}.held.npy", held[d])
    stats_path.write_text(json.dumps(stats, indent=2) + "\n")
    return tok, train, held, stats


# ------------------------------------------------------------------------------ models
def seed_spec(cfg: Config) -> zoo.ModelSpec:
    return zoo.ModelSpec.model_validate({
        "name": "btx-bench-seed", "description": "bench/btx.py seed model", "arch": {
            "kind": "decoder", "dim": cfg.dim, "n_layers": cfg.n_layers, "vocab_size": cfg.vocab,
            "max_seq_len": cfg.seq, "attention": {"n_heads": cfg.n_heads},
            "ffn": {"kind": "swiglu", "hidden_dim": cfg.hidden}, "norm": {"kind": "rmsnorm"}},
        "tokenizer": {"kind": "bpe", "file": "tokenizer.json", "bos_id": 1, "eos_id": 1, "pad_id": 2}})


@dataclass
class Stage:
    steps: int
    tokens: int
    seconds: float
    flops: float


def train(model: Any, tokens: np.ndarray, steps: int, lr: float, cfg: Config, out: Path, seed: int) -> tuple[Any, Stage]:
    stream = TokenStream(tokens, cfg.seq, cfg.batch, seed=seed)
    tc = TrainConfig(steps=steps, lr=lr, warmup_steps=max(1, steps // 20), min_lr_ratio=0.1, log_every=10,
                     extra={"bench": "btx"})
    trainer = Trainer(model, stream, tc, out=out)
    t = time.perf_counter()
    trainer.fit(progress=False)
    seconds = time.perf_counter() - t
    tokens_seen = steps * cfg.seq * cfg.batch
    flops = 3.0 * model.compiled.accounting.flops_per_token * tokens_seen
    return trainer.model, Stage(steps, tokens_seen, seconds, flops)


@torch.no_grad()
def held_out_loss(model: Any, held: np.ndarray, cfg: Config) -> float:
    """Mean next-token cross-entropy over the first eval_batches sequential batches (what
    Trainer.evaluate reads); works on log-probabilities too (the ensemble)."""
    model.eval()
    stream = TokenStream(held, cfg.seq, cfg.batch, mode="sequential")
    total, count = 0.0, 0
    for i in range(min(cfg.eval_batches, stream.batches_per_epoch)):
        batch = stream.batch(i)
        logits = model(batch)
        total += float(F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch[:, 1:].flatten(), reduction="sum"))
        count += batch[:, 1:].numel()
    return total / count


# ------------------------------------------------------------------------------ report
COLORS = {"python": "#3b7dd8", "c": "#d8793b", "english": "#4fa35a"}


def plot_losses(rows: list[dict[str, Any]], path: Path, title: str, note: str = "") -> None:
    """Grouped bars: held-out loss per domain for every method, drawn with matplotlib (the
    `docs` extra), imported here so that running the benchmark does not need it."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(10, 4.4), dpi=110)
    width = 0.8 / len(DOMAINS)
    for j, d in enumerate(DOMAINS):
        ax.bar([i + (j - (len(DOMAINS) - 1) / 2) * width for i in range(len(rows))],
               [r["loss"][d] for r in rows], width, label=d, color=COLORS[d])
    ax.plot(range(len(rows)), [r["mean"] for r in rows], "k_", markersize=18, label="mean")
    losses = [r["loss"][d] for r in rows for d in DOMAINS]
    ax.set_ylim(min(losses) * 0.9, max(losses) * 1.1)
    ax.set_xticks(range(len(rows)), [r["method"] for r in rows], rotation=25, ha="right")
    ax.set_ylabel("held-out loss (nats/token)")
    ax.set_title(title, fontsize=11)
    light_grid((ax,), "y")
    ax.legend(ncol=4, fontsize=9, loc="upper left")
    if note:
        ax.text(0.99, 0.97, note, transform=ax.transAxes, ha="right", va="top", fontsize=8, color="#555555")
    save(fig, path, tight=False)


def plot_title(cfg: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    return (f"BTX at small scale: held-out loss per domain (dim {cfg['dim']}, {cfg['n_layers']} layers, "
            f"{max(r['tokens'] for r in rows):,} tokens)")


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'method':<16} {'tokens':>11} {'wall s':>8} {'TFLOP':>8} " + " ".join(f"{d:>8}" for d in DOMAINS) \
           + f" {'mean':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['method']:<16} {r['tokens']:>11,} {r['wall_s']:>8.1f} {r['flops'] / 1e12:>8.3f} "
                     + " ".join(f"{r['loss'][d]:>8.4f}" for d in DOMAINS) + f" {r['mean']:>8.4f}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ main
def run(cfg: Config, out: Path, data: Path, threads: int, dense: bool = True,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    tok, train_tokens, held_tokens, data_stats = prepare(data, cfg)
    log(f"data ready in {time.perf_counter() - t0:.1f}s: " + ", ".join(
        f"{d} {s['train_tokens']:,} train / {s['held_tokens']:,} held tokens" for d, s in data_stats["domains"].items()))
    mixture = np.concatenate([train_tokens[d] for d in DOMAINS])

    def evaluate(model: Any) -> dict[str, float]:
        return {d: held_out_loss(model, held_tokens[d], cfg) for d in DOMAINS}

    rows: list[dict[str, Any]] = []

    def row(method: str, model: Any, stages: list[Stage], parallel_s: float | None = None, extra_s: float = 0.0
            ) -> None:
        loss = evaluate(model)
        wall = sum(s.seconds for s in stages) + extra_s
        acc = getattr(getattr(model, "compiled", None), "accounting", None)
        rows.append({"method": method, "tokens": sum(s.tokens for s in stages), "wall_s": wall,
                     "wall_parallel_s": parallel_s if parallel_s is not None else wall,
                     "flops": sum(s.flops for s in stages), "loss": loss, "mean": sum(loss.values()) / len(loss),
                     "params": acc.params if acc else None, "active_params": acc.active_params if acc else None})
        log(f"{method}: " + ", ".join(f"{d} {v:.4f}" for d, v in loss.items()))

    runs = out / "runs"
    # 1. seed on the mix
    seed, s_seed = train(zoo.build(seed_spec(cfg), seed=0, tokenizer=tok), mixture, cfg.seed_steps, cfg.lr, cfg,
                         runs / "seed", seed=0)
    row("seed", seed, [s_seed])
    # 2. branch + one expert per domain
    branch(runs / "seed", len(DOMAINS), out / "experts", overwrite=True, progress=False)
    s_experts = []
    for i, d in enumerate(DOMAINS):
        expert = zoo.load(out / "experts" / f"expert-{i}")
        expert, s = train(expert, train_tokens[d], cfg.expert_steps, cfg.branch_lr, cfg, runs / f"expert-{d}",
                          seed=1 + i)
        s_experts.append(s)
        row(f"expert-{d}", expert, [s_seed, s])
    branches = [runs / f"expert-{d}" for d in DOMAINS]
    parallel = s_seed.seconds + max(s.seconds for s in s_experts)
    # 3. BTM: parameter average, and the ensemble
    t = time.perf_counter()
    btm = mix(branches, mode="btm", progress=False)
    mix_s = time.perf_counter() - t
    row("BTM (average)", btm, [s_seed, *s_experts], parallel + mix_s, mix_s)
    members = [zoo.load(b / f"step-{cfg.expert_steps:06d}") for b in branches]
    row("BTM (ensemble)", Ensemble(members), [s_seed, *s_experts], parallel)
    # 4. BTX: mix + MoE finetune on the mix
    t = time.perf_counter()
    moe = mix(branches, mode="btx", top_k=cfg.top_k, progress=False)
    moe.save(out / "btx-mixed", progress=False)
    mix_s = time.perf_counter() - t
    row("BTX (no ft)", moe, [s_seed, *s_experts], parallel + mix_s, mix_s)
    moe, s_ft = train(moe, mixture, cfg.ft_steps, cfg.branch_lr, cfg, runs / "btx-ft", seed=10)
    row("BTX", moe, [s_seed, *s_experts, s_ft], parallel + mix_s + s_ft.seconds, mix_s)
    # 5. sparse upcycling and the dense baseline, at BTX's tokens
    matched = len(DOMAINS) * cfg.expert_steps + cfg.ft_steps
    seed_ckpt = runs / "seed" / f"step-{cfg.seed_steps:06d}"
    up = mix([seed_ckpt], mode="upcycle", n_experts=len(DOMAINS), top_k=cfg.top_k, progress=False)
    up, s_up = train(up, mixture, matched, cfg.branch_lr, cfg, runs / "upcycle", seed=11)
    row("sparse upcycle", up, [s_seed, s_up])
    if dense:
        model, s_dense = train(zoo.load(seed_ckpt), mixture, matched, cfg.branch_lr, cfg, runs / "dense", seed=12)
        row("dense", model, [s_seed, s_dense])

    result = {"config": asdict(cfg), "threads": threads, "data": data_stats,
              "accounting": {"tokens_per_step": cfg.seq * cfg.batch, "seed_steps": cfg.seed_steps,
                             "expert_steps_each": cfg.expert_steps, "btx_finetune_steps": cfg.ft_steps,
                             "upcycle_and_dense_steps_after_seed": matched},
              "rows": rows, "total_seconds": time.perf_counter() - t0}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="folder for checkpoints and results.json")
    add_figure_args(ap, "the held-out losses", run="training", source="a results.json")
    ap.add_argument("--data", type=Path, default=None, help="token cache (default: OUT/data)")
    ap.add_argument("--quick", action="store_true", help="a tiny configuration that runs in under 2 minutes")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-dense", action="store_true", help="skip the dense baseline (seed trained on, same tokens)")
    for name in ("seed_steps", "expert_steps", "ft_steps", "dim", "n_layers", "seq", "batch"):
        ap.add_argument(f"--{name.replace('_', '-')}", type=int, default=None, help="override the preset")
    args = ap.parse_args()
    if redraw(ap, args, lambda saved, path: plot_losses(saved["rows"], path,
                                                        plot_title(saved["config"], saved["rows"]))):
        return 0
    if args.out is None:
        ap.error("--out is required (unless --from-json)")
    cfg = QUICK if args.quick else FULL
    cfg = Config(**{**asdict(cfg), **{k: v for k, v in vars(args).items() if k in asdict(cfg) and v is not None}})
    result = run(cfg, args.out, args.data or args.out / "data", args.threads, dense=not args.no_dense)
    print()
    print(table(result["rows"]))
    print(f"\naccounting: {json.dumps(result['accounting'])}")
    print(f"total {result['total_seconds']:.1f}s; wrote {args.out / 'results.json'}")
    if args.plot:
        plot_losses(result["rows"], args.plot, plot_title(result["config"], result["rows"]))
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
