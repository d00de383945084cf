"""Reproduce `tiny-code`: tokenizer, data and training on the interpreter's standard library.

    python -m zoo.recipes.tiny_code --out runs/tiny-code --minutes 30            # 4-token model
    python -m zoo.recipes.tiny_code --out runs/tiny-ntp --minutes 30 --n-future 1  # baseline
    python -m zoo.recipes.tiny_code --ship runs/tiny-code/step-001800  # → zoo/models/tiny-code (bf16)

Corpus: every `*.py` of the standard library outside test folders; a file is held out when
sha256(its path relative to the stdlib) % 10 == 0 (the split bench/tokenizer.py uses). The
tokenizer is the code BPE at 4096 pieces; files are joined with EOS. Steps are sized to the time
budget from a short calibration, so both models see the same tokens when given equal budgets
and `--steps`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sysconfig
import time
from pathlib import Path

import numpy as np
import torch

SPEC = "tiny-code"


def split_corpus(root: Path | None = None) -> tuple[list[Path], list[Path]]:
    root = Path(root or sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if not ({"test", "tests", "idle_test"} & set(p.relative_to(root).parts))
                   and "site-packages" not in p.parts)
    held = [p for p in files if int(hashlib.sha256(p.relative_to(root).as_posix().encode()).hexdigest(), 16) % 10 == 0]
    held_set = set(held)
    return [p for p in files if p not in held_set], held


def read_texts(files: list[Path]) -> list[str]:
    return [p.read_text(encoding="utf-8", errors="replace") for p in files]


def encode_corpus(tok, texts: list[str]) -> np.ndarray:  # type: ignore[no-untyped-def]
    ids: list[int] = []
    for t in texts:
        ids.extend(tok.encode(t, bos=False, eos=True))
    return np.asarray(ids, dtype=np.uint16)


def prepare(out: Path, vocab_size: int = 4096):  # type: ignore[no-untyped-def]
    """Tokenizer + token files in `out` (reused when present)."""
    from zoo.runtime.tokenizers import BPETokenizer, train_code_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    train_files, held_files = split_corpus()
    if not (out / "tokenizer.json").is_file():
        train_code_tokenizer(train_files, vocab_size=vocab_size, out=out)
    tok = BPETokenizer.from_file(out / "tokenizer.json")
    for name, files in (("train", train_files), ("held", held_files)):
        path = out / f"{name}.bin"
        if not path.is_file():
            encode_corpus(tok, read_texts(files)).tofile(path)
    return tok


def ship(step_dir: Path, dest: Path | None = None) -> Path:
    """Write a trained step folder as the package's bundled model: bf16 safetensors + tokenizer."""
    import zoo

    dest = dest or Path(__file__).resolve().parents[1] / "models" / SPEC
    model = zoo.load(step_dir, dtype="bfloat16")
    return model.save(dest)


def main() -> int:
    import zoo
    from zoo.train import TokenStream, TrainConfig, Trainer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/tiny-code"))
    ap.add_argument("--data", type=Path, default=Path("runs/tiny-code-data"))
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--steps", type=int, default=None, help="overrides the time budget")
    ap.add_argument("--n-future", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ship", type=Path, default=None, metavar="STEP_DIR",
                    help="instead of training: write STEP_DIR as zoo/models/tiny-code in bf16")
    args = ap.parse_args()
    if args.ship is not None:
        print(ship(args.ship))
        return 0
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    tok = prepare(args.data)
    train = TokenStream.from_file(args.data / "train.bin", args.seq_len, args.batch, seed=0)
    held = TokenStream.from_file(args.data / "held.bin", args.seq_len, args.batch, mode="sequential")
    overrides = [f"arch.heads.n_future={args.n_future}"]
    model = zoo.build(SPEC, overrides, seed=0, tokenizer=tok)
    steps = args.steps
    if steps is None:  # calibrate: time a few steps, then fit the budget
        probe = Trainer(zoo.build(SPEC, overrides, seed=0), train, TrainConfig(steps=4, warmup_steps=1, log_every=0))
        t = time.perf_counter()
        probe.fit(3, progress=False)
        steps = max(10, int(args.minutes * 60 / ((time.perf_counter() - t) / 3)))
    cfg = TrainConfig(steps=steps, lr=args.lr, warmup_steps=max(1, steps // 20), min_lr_ratio=0.1,
                      eval_every=max(1, steps // 5), eval_batches=16, checkpoint_every=max(1, steps // 4), keep_last=1,
                      extra={"recipe": "zoo.recipes.tiny_code", "n_future": args.n_future,
                             "tokens_per_step": args.seq_len * args.batch})
    trainer = Trainer(model, train, cfg, eval_data=held, out=args.out)
    t = time.perf_counter()
    trainer.fit()
    result = trainer.evaluate(max_batches=64)
    summary = {"steps": steps, "tokens": steps * args.seq_len * args.batch, "minutes": (time.perf_counter() - t) / 60,
               "held_out_loss": result.loss, "head_losses": list(result.head_losses), "n_future": args.n_future}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
