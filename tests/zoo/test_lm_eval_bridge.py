"""zoo as an lm-evaluation-harness model (zoo/evals/lm_eval_bridge.py, issue #19 item 5): local
tasks (task YAMLs over JSONL files: multiple choice, rolling log-likelihood, generate_until)
run through `lm_eval.simple_evaluate(model="zoo")`, and every log-likelihood equals what
lm_eval's own `hf` model gives on the same folder (a tiny random Llama saved by zoo in
transformers' layout, with the shipped tiny-code tokenizer), as do the greedy generations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import lm_eval  # the eval extra (scripts/setup installs it)
import pytest

import zoo

ROOT = Path(__file__).parents[2]
TASKS = ["zoo_tiny_mc", "zoo_tiny_rolling", "zoo_tiny_gen"]
MC = [{"question": "def add(a, b):\n    return", "choices": [" a + b", " a - b", "None"], "answer": 0},
      {"question": "x = 1\ny = ", "choices": ["2", "x + 1", "y"], "answer": 1},
      {"question": "", "choices": ["import os", "print(1)"], "answer": 0}]
TEXTS = [{"text": "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n" * 5},
         {"text": "import os\nprint(os.getcwd())"}]


def _task(name: str, data: Path, body: str) -> str:
    return (f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
            f"test_split: test\n{body}")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("lm_eval")
    m = zoo.build("llama-2-7b", ["arch.dim=32", "arch.n_layers=2", "arch.attention.n_heads=4", "arch.ffn.hidden_dim=64",
                                 "arch.vocab_size=4096", "arch.max_seq_len=128", "tokenizer.kind=bpe",
                                 "tokenizer.file=tokenizer.json", "tokenizer.eos_id=1", "tokenizer.pad_id=2"],
                  init="random", seed=0)
    m.tokenizer = zoo.load("tiny-code").tokenizer
    folder = m.save(root / "model")
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MC))
    (tasks / "text.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TEXTS))
    (tasks / "mc.yaml").write_text(_task("zoo_tiny_mc", tasks / "mc.jsonl", 'output_type: multiple_choice\n'
                                         'doc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\n'
                                         'doc_to_target: "{{answer}}"\nmetric_list:\n  - metric: acc\n'))
    (tasks / "rolling.yaml").write_text(_task("zoo_tiny_rolling", tasks / "text.jsonl",
                                              'output_type: loglikelihood_rolling\ndoc_to_text: ""\n'
                                              'doc_to_target: "{{text}}"\nmetric_list:\n  - metric: word_perplexity\n'))
    (tasks / "gen.yaml").write_text(_task("zoo_tiny_gen", tasks / "mc.jsonl", 'output_type: generate_until\n'
                                          'doc_to_text: "{{question}}"\ndoc_to_target: "{{choices[answer]}}"\n'
                                          'generation_kwargs:\n  until: ["\\n"]\n  max_gen_toks: 6\n'
                                          '  do_sample: false\nmetric_list:\n  - metric: exact_match\n'))
    env = {"HF_DATASETS_OFFLINE": "1", "HF_HOME": str(root / "hf"), "HF_DATASETS_CACHE": str(root / "hf" / "ds")}
    return {"folder": folder, "tasks": tasks, "env": env}


def evaluate(files: dict[str, Any], model: str) -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in files["env"].items():
            mp.setenv(k, v)
        from lm_eval.tasks import TaskManager

        from zoo.evals import lm_eval_bridge  # noqa: F401  registers --model zoo

        manager = TaskManager(include_path=str(files["tasks"]), include_defaults=False)
        return lm_eval.simple_evaluate(model=model, model_args=f"pretrained={files['folder']},dtype=float32",
                                       tasks=TASKS, task_manager=manager, log_samples=True, batch_size=4, device="cpu")


def _responses(results: dict[str, Any], task: str) -> list[Any]:
    return [s["resps"] for s in sorted(results["samples"][task], key=lambda s: s["doc_id"])]


def test_loglikelihoods_and_generations_equal_lm_evals_hf_model(files: dict[str, Any]) -> None:
    ours, ref = evaluate(files, "zoo"), evaluate(files, "hf")
    for task in ("zoo_tiny_mc", "zoo_tiny_rolling"):
        flat = [(a, b) for doc_a, doc_b in zip(_responses(ours, task), _responses(ref, task)) for a, b in zip(doc_a, doc_b)]
        assert len(flat) == (sum(len(r["choices"]) for r in MC) if task == "zoo_tiny_mc" else len(TEXTS))
        for (a,), (b,) in flat:
            if task == "zoo_tiny_mc":  # (log-likelihood, is greedy)
                assert a[0] == pytest.approx(b[0], abs=1e-4) and a[1] == b[1]
            else:
                assert a == pytest.approx(b, abs=1e-3, rel=1e-6)
        metric = {"zoo_tiny_mc": "acc,none", "zoo_tiny_rolling": "word_perplexity,none"}[task]
        assert ours["results"][task][metric] == pytest.approx(ref["results"][task][metric], rel=1e-5)
    generated = _responses(ours, "zoo_tiny_gen")
    assert generated == _responses(ref, "zoo_tiny_gen") and all("\n" not in r[0] for r in generated)


def test_model_args_are_checked() -> None:
    from zoo.compiler.errors import UsageError

    from zoo.evals.lm_eval_bridge import ZooLM

    with pytest.raises(UsageError, match="needs model_args pretrained"):
        ZooLM()
    with pytest.raises(UsageError, match="unknown model_args \\['colour'\\]"):
        ZooLM(pretrained="tiny-code", colour="red")


@pytest.mark.slow
def test_the_command_line_runs_a_local_task(files: dict[str, Any], tmp_path: Path) -> None:
    """`python -m zoo.evals.lm_eval_bridge` takes lm_eval's own arguments with --model zoo."""
    env = {**os.environ, **files["env"], "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "zoo.evals.lm_eval_bridge", "--model", "zoo", "--model_args",
                        f"pretrained={files['folder']}", "--tasks", "zoo_tiny_mc", "--include_path",
                        str(files["tasks"]), "--output_path", str(tmp_path / "out"), "--batch_size", "4"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    found = list((tmp_path / "out").rglob("results_*.json"))
    assert len(found) == 1
    acc = json.loads(found[0].read_text())["results"]["zoo_tiny_mc"]["acc,none"]
    assert 0.0 <= acc <= 1.0 and "zoo_tiny_mc" in found[0].read_text()
