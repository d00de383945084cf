"""Print docs/distributed.md's memory table from the sharding plan pass (the doc's test checks
the committed table equals this output): per-rank weights (bf16) and KV cache per token."""

from __future__ import annotations

import sys

import zoo
from zoo.compiler.passes.sharding import plan_sharding

MODELS = ("llama-2-7b", "llama-2-70b", "llama-3.1-405b")
TPS = (1, 2, 4, 8)


def table() -> str:
    lines = ["| model | tp | weights per rank (bf16) | KV cache per token per rank (bf16) |",
             "|---|---|---|---|"]
    for name in MODELS:
        ir = zoo.compile(name).ir
        for tp in TPS:
            plan = plan_sharding(ir, tp=tp)
            lines.append(f"| {name} | {tp} | {plan.rank_bytes('bfloat16') / 2**30:.2f} GiB | "
                         f"{plan.kv_bytes_per_token('bfloat16') / 2**10:.0f} KiB |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(table() + "\n")
