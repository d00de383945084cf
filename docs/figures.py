"""Draws the benchmark figures of docs/btx.md, docs/tokenizers.md and docs/data.md from the
numbers those pages state, with the benchmarks' own plotting functions (their `--plot`):

    .venv/bin/python docs/figures.py            # needs matplotlib (pip install -e '.[docs]')

The benchmarks take tens of minutes to hours on a CPU, so the pictures are redrawn from the
measured tables (copied below from the pages; keep them in step) rather than by rerunning
them. A fresh run draws its own: `bench/<name>.py ... --plot PATH` (or `--json` then
`--from-json FILE --plot PATH`).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NOTE = "drawn from the table in docs/{} (docs/figures.py), not a rerun"


def bench(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]  # dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


# docs/btx.md, "Results": method, tokens, held-out loss python / c / english
BTX = [("seed", 1_228_800, 3.029, 4.808, 5.070), ("expert-python", 2_457_600, 2.105, 6.281, 5.458),
       ("expert-c", 2_457_600, 4.825, 3.937, 5.685), ("expert-english", 2_457_600, 5.357, 6.309, 4.127),
       ("BTM (average)", 4_915_200, 3.437, 4.987, 4.896), ("BTM (ensemble)", 4_915_200, 2.709, 4.263, 4.431),
       ("BTX before the MoE finetune", 4_915_200, 3.512, 5.027, 4.911), ("BTX", 6_144_000, 2.302, 4.143, 4.160),
       ("sparse upcycling", 6_144_000, 1.879, 3.644, 3.731)]
BTX_CONFIG = {"dim": 128, "n_layers": 4}

# docs/tokenizers.md: bytes/token per regex x vocabulary, then the decode-speed table
STUDY = {"sizes": [1024, 4096, 16384],
         "bytes_per_token": {"gpt4": [2.474, 3.309, 3.841], "llama": [2.384, 3.041, 3.380],
                             "code": [2.540, 3.401, 3.967]},
         "params": [3.74e6, 4.33e6, 6.69e6], "tokens_per_s": [144, 129, 46],
         "chars_per_s": {"gpt4": [357, 427, 177], "llama": [344, 392, 156], "code": [367, 439, 183]}}

# docs/tokenizers.md, "Measured on tiny-code": held-out bits/byte
SWAP = {"steps": 100, "tokens": 51_200,
        "rows": [{"name": "tiny-code, own tokenizer", "before": 1.896, "after": None},
                 {"name": "swapped, FVT rows", "before": 2.524, "after": 2.116},
                 {"name": "swapped, random rows", "before": 3.143, "after": 2.312}]}

# docs/data.md, the two tables at --rate 0.3: (name, n, in smallest, distance, farthest, removed)
# and (name, n, farther, change, smaller, larger)
UNPAIRED = [("clean", 240, .088, .1037, .092, .175), ("corrupted (all kinds)", 80, .175, .1097, .125, .275),
            ("remove_closing_bracket", 16, .250, .0828, .0, .188), ("remove_colon", 11, .273, .1308, .273, .455),
            ("rename_variable", 9, .222, .1429, .222, .556), ("remove_lines", 13, .154, .1487, .308, .385),
            ("swap_lines", 7, .0, .0756, .0, .0), ("break_indentation", 9, .333, .0804, .0, .333),
            ("off_by_one", 9, .0, .1148, .111, .111), ("flip_comparison", 6, .0, .0853, .0, .0)]
PAIRED = [("all kinds", 80, .538, .0026, .012, .0), ("remove_closing_bracket", 16, .625, -.0012, .0, .0),
          ("remove_colon", 11, .455, -.0004, .0, .0), ("rename_variable", 9, .444, .0001, .0, .0),
          ("remove_lines", 13, .769, .0198, .077, .0), ("swap_lines", 7, .429, -.0014, .0, .0),
          ("break_indentation", 9, .333, -.0021, .0, .0), ("off_by_one", 9, .667, .0001, .0, .0),
          ("flip_comparison", 6, .333, -.0000, .0, .0)]
SCIP = {"prune": 0.2, "rate": 0.3, "clusters": 12,
        "unpaired": [dict(zip(("name", "n", "in_small", "distance", "far", "pruned"), r)) for r in UNPAIRED],
        "paired": [dict(zip(("name", "n", "farther", "delta", "smaller", "larger"), r)) for r in PAIRED]}
DOWNSTREAM = {"tokens": 614400, "steps": 300, "prune": 0.2, "rate": 0.3,
              "rows": [{"arm": "unpruned", "corrupted_share": 0.25, "bpb": [2.4092, 2.3874]},
                       {"arm": "SCIP-pruned", "corrupted_share": 0.248, "bpb": [2.4006, 2.3768]},
                       {"arm": "randomly pruned", "corrupted_share": 0.223, "bpb": [2.3913, 2.3772]}]}


def draw(out: Path = DOCS) -> list[Path]:
    btx = bench("btx")
    rows = [{"method": m, "tokens": t, "loss": dict(zip(btx.DOMAINS, losses)), "mean": sum(losses) / len(losses)}
            for m, t, *losses in BTX]
    paths = [out / "btx-losses.png", out / "tokenizer-study.png", out / "tokenizer-swap.png", out / "scip.png",
             out / "scip-downstream.png"]
    btx.plot_losses(rows, paths[0], btx.plot_title(BTX_CONFIG, rows), NOTE.format("btx.md"))
    bench("tokenizer").plot_study(STUDY, paths[1], NOTE.format("tokenizers.md"))
    bench("tokenizer_swap").plot_swap(SWAP, paths[2], NOTE.format("tokenizers.md"))
    bench("scip").plot_scip(SCIP, paths[3], NOTE.format("data.md"))
    bench("scip_downstream").plot_downstream(DOWNSTREAM, paths[4], NOTE.format("data.md"))
    return paths


if __name__ == "__main__":
    for path in draw(Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS):
        print(f"wrote {path}")
