"""CRUXEval (Gu et al. 2024): 800 short Python functions `f`, each with one input and its output.
Output prediction asks for `f(input)`; input prediction for any `x` with `f(x) == output`.

- data: JSON lines with `code`, `input`, `output`, `id` (`sample_0` …), from a file or the
  Hub dataset `cruxeval-org/cruxeval` (load());
- prompts: the benchmark's own texts (cruxeval_prompts.py), direct or chain of thought;
- generation: stop at `[/ANSWER]` (`# done` for the Phind prompt); sampling defaults of the
  paper: 10 samples at temperature 0.2 (and 0.8), top-p 0.95;
- post-processing (postprocess()) as the reference `inference/tasks/*_prediction.py` do it:
  with CoT, keep what follows `[ANSWER]`; for output prediction keep what follows the first
  `==`; for input prediction keep what precedes it, after `assert`;
- scoring (score()) as `evaluation/evaluate_generations.py` does it: each generation `g` is
  judged by executing `{code}\\nassert {output} == {g}` (input mode: `g` is the call
  `f(...)`; output mode: `g` is the literal) with a 3-second limit; an input-mode answer without
  `f(`, or an output-mode answer that contains the call `f(input)` itself, fails unexecuted;
  pass@1 and pass@5 by the unbiased estimator, as percentages.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

from ..runtime.errors import UsageError
from . import cruxeval_prompts as P
from .execution import check_programs
from .passk import pass_at_k

HUB_DATASET = "cruxeval-org/cruxeval"
FIELDS = ("code", "input", "output", "id")
TASKS = ("input", "output")
#: the paper's sampling: n=10 at each temperature, nucleus 0.95; pass@1 at 0.2, pass@5 at 0.8
DEFAULTS = {"n": 10, "temperatures": (0.2, 0.8), "top_p": 0.95}
TIMEOUT = 3.0


class CruxEvalError(UsageError):
    """Bad CRUXEval data or generations: says which file, which sample, what is wrong."""


# --------------------------------------------------------------------------- data
def read_jsonl(path: str | Path) -> list[dict[str, str]]:
    p = Path(path)
    if not p.is_file():
        raise CruxEvalError(f"CRUXEval data: no file at {p}")
    rows = []
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise CruxEvalError(f"{p}:{n}: not JSON ({e.msg})") from None
            missing = [k for k in FIELDS if not isinstance(row, dict) or not isinstance(row.get(k), str)]
            if missing:
                raise CruxEvalError(f"{p}:{n}: a CRUXEval sample needs string fields {list(FIELDS)}; "
                                    f"missing or not a string: {missing}")
            rows.append({k: row[k] for k in FIELDS})
    if not rows:
        raise CruxEvalError(f"{p}: no samples")
    return rows


def load(source: str | Path | None = None, *, revision: str | None = None) -> list[dict[str, str]]:
    """The benchmark's samples: from a JSON-lines file (`cruxeval.jsonl`) when `source` is a
    path that exists, else from the Hub dataset `source` (default cruxeval-org/cruxeval)
    through huggingface_hub. CruxEvalError when neither works, saying why."""
    if source is not None and (Path(source).exists() or str(source).endswith((".jsonl", ".json"))):
        return read_jsonl(source)
    repo = str(source or HUB_DATASET)
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo, repo_type="dataset", revision=revision,
                                        allow_patterns=["*.jsonl", "*.parquet", "**/*.jsonl", "**/*.parquet"]))
    except Exception as e:  # noqa: BLE001 - offline, missing repo, auth: one clear message
        raise CruxEvalError(f"could not download the CRUXEval dataset {repo!r} from the Hub "
                            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'}); "
                            f"give the path of cruxeval.jsonl instead (--data cruxeval.jsonl)") from None
    files = sorted(folder.rglob("*.jsonl"))
    if files:
        return read_jsonl(files[0])
    parquet = sorted(folder.rglob("*.parquet"))
    if parquet:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise CruxEvalError(f"the Hub dataset {repo!r} is stored as Parquet, which needs pyarrow "
                                "(pip install pyarrow), or give the path of cruxeval.jsonl") from None
        rows = [r for f in parquet for r in pq.read_table(f).to_pylist()]
        return [{k: str(r[k]) for k in FIELDS} for r in rows]
    raise CruxEvalError(f"the Hub dataset {repo!r} holds no .jsonl or .parquet file")


# --------------------------------------------------------------------------- prompts
def _check_task(task: str) -> None:
    if task not in TASKS:
        raise CruxEvalError(f"CRUXEval task must be 'input' or 'output', got {task!r}")


def prompt(sample: dict[str, str], task: str, *, cot: bool = False, phind: bool = False) -> str:
    """The benchmark's prompt for one sample."""
    _check_task(task)
    if task == "output":
        template = P.PHIND_OUTPUT if phind else (P.COT_OUTPUT if cot else P.DIRECT_OUTPUT)
        return template.format(code=sample["code"], input=sample["input"])
    if phind:
        raise CruxEvalError("the Phind prompt is for output prediction only")
    return (P.COT_INPUT if cot else P.DIRECT_INPUT).format(code=sample["code"], output=sample["output"])


def stop_sequences(*, phind: bool = False) -> list[str]:
    return ["# done"] if phind else ["[/ANSWER]"]


def postprocess(generation: str, task: str, *, cot: bool = False) -> str:
    """The answer in a completion (the text after the prompt, cut at the stop sequence)."""
    _check_task(task)
    g = generation
    if cot and "[ANSWER]" in g:
        g = g.split("[ANSWER]")[1].strip()
    if "==" in g:
        g = g.split("==")[1 if task == "output" else 0].strip()
    if task == "input" and "assert" in g:
        g = g.split("assert")[1].strip()
    return g.strip()


# --------------------------------------------------------------------------- scoring
def check_program(sample: dict[str, str], answer: str) -> str:
    return f"{sample['code']}\nassert {sample['output']} == {answer}"


def rejected_unexecuted(sample: dict[str, str], answer: str, task: str) -> bool:
    """The harness's two filters: an input answer must call f; an output answer must not."""
    return ("f(" not in answer) if task == "input" else (f"f({sample['input']})" in answer)


def read_generations(path: str | Path) -> dict[str, list[str]]:
    p = Path(path)
    if not p.is_file():
        raise CruxEvalError(f"generations: no file at {p}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CruxEvalError(f"{p}: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) and all(isinstance(g, str) for g in v)
                                             for v in data.values()):
        raise CruxEvalError(f"{p}: expected {{\"sample_N\": [generation strings]}} (CRUXEval's generations layout)")
    return data


def score(generations: dict[str, list[str]], samples: Sequence[dict[str, str]], task: str, *,
          workers: int = 2, progress: bool | str = False, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The reference harness's scored layout: raw_generations, raw_scored_generations (one
    boolean per generation), pass_at_1 and pass_at_5 in percent. Every sample of the data must
    have generations (keys `sample_i` by the data's ids)."""
    _check_task(task)
    by_id = {s["id"]: s for s in samples}
    missing = [s["id"] for s in samples if s["id"] not in generations]
    if missing:
        raise CruxEvalError(f"generations lack {len(missing)} of the {len(samples)} samples (first: {missing[0]}); "
                            "the layout is {\"sample_N\": [generations]} with one key per sample")
    extra = [k for k in generations if k not in by_id]
    if extra:
        raise CruxEvalError(f"generations name samples the data does not have (first: {extra[0]})")
    jobs: list[tuple[str, int, str]] = []
    scored: dict[str, list[bool]] = {s["id"]: [False] * len(generations[s["id"]]) for s in samples}
    for s in samples:
        for j, g in enumerate(generations[s["id"]]):
            if not rejected_unexecuted(s, g, task):
                jobs.append((s["id"], j, check_program(s, g)))
    verdicts = check_programs([p for _, _, p in jobs], timeout=timeout, workers=workers, progress=progress)
    for (sid, j, _), v in zip(jobs, verdicts):
        scored[sid][j] = v.passed
    ordered = [scored[s["id"]] for s in samples]
    out: dict[str, Any] = {"raw_generations": generations,
                           "raw_scored_generations": {s["id"]: scored[s["id"]] for s in samples}}
    for k in (1, 5):
        if all(len(r) >= k for r in ordered):
            out[f"pass_at_{k}"] = sum(pass_at_k(len(r), sum(r), k) for r in ordered) / len(ordered) * 100
    return out


# --------------------------------------------------------------------------- generate and score
def evaluate_model(model: Any, samples: Sequence[dict[str, str]], task: str, out_dir: str | Path, *,
                   n: int = 10, temperature: float = 0.2, top_p: float = 0.95, cot: bool = False,
                   max_new_tokens: int | None = None, batch_size: int = 8, seed: int = 0, workers: int = 2,
                   progress: bool = True, model_name: str = "") -> dict[str, Any]:
    """Generate `n` completions per sample (resumable: out_dir/completions.jsonl), post-process
    them, score them, and write out_dir/generations.json (the harness's layout),
    out_dir/scored.json and out_dir/summary.json; returns the summary."""
    from .generation import generate_all

    _check_task(task)
    out = Path(out_dir)
    prompts = {s["id"]: prompt(s, task, cot=cot) for s in samples}
    start = time.monotonic()
    raw = generate_all(model, prompts, n=n, out=out / "completions.jsonl",
                       max_new_tokens=max_new_tokens or (1024 if cot else 256), temperature=temperature,
                       top_p=top_p, stop=stop_sequences(), batch_size=batch_size, seed=seed,
                       progress="generating" if progress else False)
    gen_seconds = time.monotonic() - start
    generations = {k: [postprocess(g, task, cot=cot) for g in v] for k, v in raw.items()}
    write_json(out / "generations.json", generations)
    scored = score(generations, samples, task, workers=workers, progress="scoring" if progress else False)
    write_json(out / "scored.json", scored)
    summary = {"benchmark": "cruxeval", "task": task + ("+cot" if cot else ""), "model": model_name,
               "samples": len(samples), "n": n, "temperature": temperature, "top_p": top_p,
               "pass@1": scored.get("pass_at_1"), "pass@5": scored.get("pass_at_5"),
               "generation_s": round(gen_seconds, 2)}
    write_json(out / "summary.json", summary)
    return summary


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)
