"""Decode speed of weight-only int8 / int4 against float32: a ~134M Llama (bench/decode.py's
shape, random weights), batch 1, a 128-token prompt, then `--new` tokens; tokens/s of the
decode steps only (the prompt excluded), best of `--repeats`, the variants interleaved so all
see the same machine. Also the bytes each decode step reads (every weight once, the embedding
table excepted) and the effective GB/s.

    .venv/bin/python bench/quant_decode.py [--threads 2] [--new 128] [--repeats 3]

Run it on a quiet machine: nothing else taking CPU while it measures.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo.runtime.generation import iter_tokens  # noqa: E402
from zoo.runtime.quant import QuantLinear  # noqa: E402

import zoo  # noqa: E402
from zoo.checkpoint.quantize import quantize_model  # noqa: E402

LLAMA_134M = ["arch.dim=768", "arch.n_layers=12", "arch.attention.n_heads=12", "arch.vocab_size=32000",
              "arch.ffn.hidden_dim=2048", "arch.max_seq_len=2048"]
VARIANTS = {"float32": None, "int8": {"kind": "int8"}, "int4 g32": {"kind": "int4", "group_size": 32},
            "int4 g128": {"kind": "int4", "group_size": 128}}


def decode_seconds(model: torch.nn.Module, prompt: list[int], new: int) -> float:
    steps = iter_tokens(model, [prompt], new)
    next(steps)  # the prompt's forward and the first token
    t = time.perf_counter()
    for _ in steps:
        pass
    return time.perf_counter() - t


def read_bytes(model: torch.nn.Module) -> int:
    """Bytes one decode step reads: every parameter but the embedding table (one row of it)."""
    total = 0
    for name, t in model.state_dict().items():
        if name != "embed.weight" or getattr(model, "output", None) is None:
            total += t.numel() * t.element_size()
    for mod in model.modules():  # the int4 kernel reads its own packed copy and scales, not the stored ones
        prep = mod.__dict__.get("_prepared") if isinstance(mod, QuantLinear) else None
        if prep is not None:
            total += sum(x.numel() * x.element_size() for x in prep[1:])
            total -= sum(p.numel() * p.element_size() for n, p in mod.named_parameters() if n != "bias")
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    base = zoo.build("llama-2-7b", LLAMA_134M, seed=0).eval()
    models = {name: base if q is None else quantize_model(copy.deepcopy(base), q) for name, q in VARIANTS.items()}
    prompt = torch.randint(0, 32000, (128,), generator=torch.Generator().manual_seed(0)).tolist()
    best = {name: float("inf") for name in models}
    for _ in range(args.repeats + 1):  # the first round warms up
        for name, m in models.items():
            with torch.no_grad():
                best[name] = min(best[name], decode_seconds(m, prompt, args.new + 1))
    from bench.quant_accuracy import cpu_name

    print(f"CPU: {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{base.num_parameters / 1e6:.0f}M Llama, b=1, prompt 128, {args.new} new tokens, best of {args.repeats}\n")
    print("| weights | MB read / token | decode tok/s | vs float32 | effective GB/s |")
    print("|---|---|---|---|---|")
    f32 = args.new / best["float32"]
    for name, m in models.items():
        tps = args.new / best[name]
        mb = read_bytes(m) / 1e6
        print(f"| {name} | {mb:.0f} | {tps:.1f} | {tps / f32:.2f}x | {mb * tps / 1e3:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
