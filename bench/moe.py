"""Mixture-of-experts forward throughput on CPU: a top-2-of-8 zoo MoE model against a dense zoo
model with the same *active* parameters (FFN hidden = 2 x expert hidden) and against
transformers.MixtralForCausalLM holding the same weights, all in the same run. Prints tokens/s
and ratios (the goal: the MoE model at >= 0.8x the dense one, i.e. sparse dispatch costs little
beyond the FLOPs it does).

    .venv/bin/python bench/moe.py            # dim 512, 4 layers, expert hidden 1024, batch 8 x 256
    .venv/bin/python bench/moe.py --quick    # a smaller model, seconds (a smoke test)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo  # noqa: E402
from tests.runtime.test_moe_parity import mixtral_from  # noqa: E402

FULL = {"dim": 512, "n_layers": 4, "heads": 8, "kv_heads": 8, "expert_hidden": 1024, "vocab": 32000, "batch": 8,
        "seq": 256}
QUICK = {"dim": 128, "n_layers": 2, "heads": 4, "kv_heads": 4, "expert_hidden": 256, "vocab": 4000, "batch": 4,
         "seq": 64}


def shape(c: dict[str, int]) -> list[str]:
    return [f"arch.dim={c['dim']}", f"arch.n_layers={c['n_layers']}", f"arch.attention.n_heads={c['heads']}",
            f"arch.attention.n_kv_heads={c['kv_heads']}", f"arch.vocab_size={c['vocab']}",
            f"arch.max_seq_len={max(1024, c['seq'])}"]


def best_of_all(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Min time of each function, run in turn every round so all see the same machine load."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: min(v) for k, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small model, for a smoke test")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    c = QUICK if args.quick else FULL
    repeats = args.repeats or (2 if args.quick else 5)

    moe = zoo.build("mixtral-8x7b", shape(c) + ["arch.ffn.n_experts=8", "arch.ffn.top_k=2",
                                                 f"arch.ffn.expert.hidden_dim={c['expert_hidden']}"],
                    backend="sdpa", seed=0).eval()
    dense = zoo.build("llama-2-7b", shape(c) + [f"arch.ffn.hidden_dim={2 * c['expert_hidden']}",
                                                f"arch.attention.n_kv_heads={c['kv_heads']}"],
                      backend="sdpa", seed=0).eval()
    ref = mixtral_from(moe)
    ref.config._attn_implementation = "sdpa"  # transformers at its fastest on CPU
    a_moe, a_dense = moe.compiled.accounting, dense.compiled.accounting
    routers = 8 * c["dim"] * c["n_layers"]
    assert a_moe.active_params == a_dense.params + routers, (a_moe.active_params, a_dense.params)  # routers aside

    tokens = torch.randint(0, c["vocab"], (c["batch"], c["seq"]))
    n = tokens.numel()
    with torch.inference_mode():
        torch.testing.assert_close(moe(tokens), ref(tokens).logits, atol=1e-3, rtol=1e-3)
        t = best_of_all({"moe": lambda: moe(tokens), "dense": lambda: dense(tokens),
                         "transformers": lambda: ref(tokens).logits}, repeats)

    print(f"MoE forward, float32, {args.threads} threads, batch {c['batch']} x {c['seq']} tokens "
          f"(best of {repeats})")
    print(f"  moe    dim {c['dim']}, {c['n_layers']} layers, 8 experts top-2, expert hidden {c['expert_hidden']}: "
          f"{a_moe.params:,} params, {a_moe.active_params:,} active")
    print(f"  dense  same shape, FFN hidden {2 * c['expert_hidden']}: {a_dense.params:,} params")
    for name in ("moe", "dense", "transformers"):
        label = {"moe": "zoo MoE", "dense": "zoo dense (same active params)", "transformers": "transformers Mixtral"}
        print(f"  {label[name]:<32} {n / t[name]:>10,.0f} tokens/s  ({t[name] * 1e3:.1f} ms)")
    print(f"  MoE / dense          {t['dense'] / t['moe']:.2f}x  (goal >= 0.8x)")
    print(f"  MoE / transformers   {t['transformers'] / t['moe']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
