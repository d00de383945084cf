"""Tokenizer switching on tiny-code: Fast Vocabulary Transfer against random new rows, right
after the swap and after a short finetune (docs/tokenizers.md).

    .venv/bin/python bench/tokenizer_swap.py                     # default: 150 finetune steps
    .venv/bin/python bench/tokenizer_swap.py --steps 0           # the swap only (seconds)
    .venv/bin/python bench/tokenizer_swap.py --json r.json --plot r.png   # figures saved and drawn
    .venv/bin/python bench/tokenizer_swap.py --from-json r.json --plot r.png   # redrawn, nothing run

The new tokenizer is a byte-level BPE with GPT-4's pre-tokenization regex (tiny-code's own uses
zoo's code regex), trained on the same training files as tiny-code (the standard library split
of zoo.recipes.tiny_code). Held-out loss is in bits per byte of the held-out files (per-token
losses of two vocabularies do not compare). Every model, the unswapped control included,
finetunes with the same Trainer settings on the same number of tokens of the training split,
each in its own tokenizer.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo  # noqa: E402
from bench.figure import add_figure_args, emit, light_grid, pyplot, redraw, save  # noqa: E402
from zoo.recipes.tiny_code import read_texts, split_corpus  # noqa: E402
from zoo.tokenizer.evaluate import held_out_loss  # noqa: E402
from zoo.tokenizer.swap import swap_tokenizer  # noqa: E402
from zoo.tokenizer.train import train_tokenizer  # noqa: E402
from zoo.train import TokenStream, TrainConfig, Trainer  # noqa: E402


def encode(tok, texts: list[str]) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.concatenate([np.asarray(ids, dtype=np.int64) for ids in tok.encode_batch(texts, bos=False, eos=True)])


def finetune(model, ids: np.ndarray, steps: int, seq_len: int, batch: int, lr: float):  # type: ignore[no-untyped-def]
    data = TokenStream(ids, seq_len, batch, seed=0)
    cfg = TrainConfig(steps=steps, lr=lr, warmup_steps=max(1, steps // 10), log_every=0, bf16=False)
    trainer = Trainer(model, data, cfg)
    for i in range(steps):
        s = trainer.train_step()
        if i % 10 == 0 or i == steps - 1:
            print(f"#   step {i + 1}/{steps}: loss {s.loss:.3f} ({s.seconds:.1f} s)", flush=True)
    return model


def plot_swap(result: dict, path: Path, note: str = "") -> None:
    """Held-out bits/byte right after the swap and after the finetune, per model (the table
    main prints). matplotlib (the `docs` extra) is imported here."""
    plt = pyplot()

    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(7, 3.8), dpi=110)
    for j, (key, label) in enumerate((("before", "right after the swap"),
                                      ("after", f"after {result['steps']} finetune steps"))):
        xs = [i + (j - 0.5) * 0.38 for i, r in enumerate(rows) if r[key] is not None]
        vals = [r[key] for r in rows if r[key] is not None]
        bars = ax.bar(xs, vals, 0.38, label=label)
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_xticks(range(len(rows)), [r["name"] for r in rows])
    ax.set_ylabel("held-out bits / byte (lower is better)")
    ax.set_title(f"switching tiny-code's tokenizer: FVT vs random new rows ({result['tokens']:,} finetune tokens)",
                 fontsize=10)
    light_grid((ax,), "y")
    ax.legend(fontsize=9, loc="upper left")
    save(fig, path, note, tight=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab", type=int, default=4096, help="the new tokenizer's size")
    ap.add_argument("--regex", default="gpt4", help="the new tokenizer's pre-tokenization regex")
    ap.add_argument("--steps", type=int, default=150, help="finetune steps (0: swap only)")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--eval-tokens", type=int, default=16384)
    ap.add_argument("--finetune-control", action="store_true",
                    help="also finetune the unswapped model (on its own tokens) as a control")
    add_figure_args(ap)
    args = ap.parse_args()
    if redraw(ap, args, plot_swap):
        return

    train_files, held_files = split_corpus()
    held = read_texts(held_files)
    train = read_texts(train_files)
    t0 = time.perf_counter()
    tok = train_tokenizer(train_files, args.vocab, args.regex)
    print(f"# new tokenizer: {args.regex} regex, {tok.vocab_size} tokens, trained in {time.perf_counter() - t0:.1f} s "
          f"on {len(train_files)} files; held out: {len(held_files)} files")
    base = zoo.load("tiny-code", dtype="float32")
    models = {"tiny-code (own tokenizer)": base}
    for init in ("fvt", "random"):
        m, rep = swap_tokenizer(base, tok, init=init, seed=0)
        if init == "fvt":
            print("# " + "\n# ".join(rep.lines()))
        models[f"swapped, {init}"] = m
    t0 = time.perf_counter()
    ids = {id(base.tokenizer): encode(base.tokenizer, train), id(tok): encode(tok, train)}
    print(f"# training split encoded in {time.perf_counter() - t0:.0f} s: {len(ids[id(base.tokenizer)]):,} tokens "
          f"(old tokenizer), {len(ids[id(tok)]):,} (new)")
    rows = []
    for name, m in models.items():
        before = held_out_loss(m, held, seq_len=args.seq_len, max_tokens=args.eval_tokens)
        after = None
        if args.steps and (m is not base or args.finetune_control):
            t0 = time.perf_counter()
            finetune(m, ids[id(m.tokenizer)], args.steps, args.seq_len, args.batch, args.lr)
            after = held_out_loss(m, held, seq_len=args.seq_len, max_tokens=args.eval_tokens)
            print(f"# {name}: {args.steps} steps in {time.perf_counter() - t0:.0f} s", flush=True)
        rows.append((name, before, after))
    tokens = args.steps * args.seq_len * args.batch
    print(f"\n| model | held-out bits/byte after swap | after {args.steps} steps ({tokens:,} tokens) |")
    print("|---|---|---|")
    for name, before, after in rows:
        print(f"| {name} | {before.bits_per_byte:.3f} | {after.bits_per_byte:.3f} |" if after else
              f"| {name} | {before.bits_per_byte:.3f} | - |")
    result = {"steps": args.steps, "tokens": tokens,
              "rows": [{"name": n, "before": b.bits_per_byte, "after": a.bits_per_byte if a else None}
                       for n, b, a in rows]}
    emit(args, result, plot_swap)


if __name__ == "__main__":
    main()
