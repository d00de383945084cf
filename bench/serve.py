"""`zoo serve` under load: 1, 4 and 16 concurrent clients (threads with the openai client), each
sending N completion requests of fixed max_tokens at temperature 0, against the batched server
(--max-batch 16) and a serial baseline (the same server with --max-batch 1), in the same run.
Prints requests/s, generated tokens/s and p50/p95 latency, and the batched/serial ratios.

    .venv/bin/python bench/serve.py                      # tiny-code, CPU
    .venv/bin/python bench/serve.py --model tiny-code --requests 8 --max-tokens 64 --clients 1,4,16
    python bench/serve.py --model ./my-model --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import openai  # noqa: E402

import zoo  # noqa: E402
from zoo.serve import ServerThread  # noqa: E402

PROMPTS = ["def fib(n):", "import os\n", "class Stack:\n    def", "for i in range(10):", "x = [", "def main():\n",
           "# read a file\ndef read(path):", "return", "if __name__ ==", "with open(", "try:\n    import",
           "def add(a, b):", "class Config:", "while True:", "from typing import", "async def fetch(url):"]


def run_clients(base_url: str, name: str, clients: int, requests: int, max_tokens: int) -> dict:
    latencies: list[float] = []
    tokens = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client(c: int) -> None:
        api = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=600)
        barrier.wait()
        for r in range(requests):
            t0 = time.perf_counter()
            out = api.completions.create(model=name, prompt=PROMPTS[(c * requests + r) % len(PROMPTS)],
                                         max_tokens=max_tokens, temperature=0)
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                tokens[0] += out.usage.completion_tokens

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = sorted(latencies)
    return {"req_s": len(lat) / wall, "tok_s": tokens[0] / wall, "p50": statistics.median(lat),
            "p95": lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))], "wall": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-code")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--clients", default="1,4,16", help="comma-separated concurrency levels")
    ap.add_argument("--requests", type=int, default=8, help="requests per client")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--max-batch", type=int, default=16, help="the batched server's --max-batch")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    levels = [int(c) for c in args.clients.split(",")]
    model = zoo.load(args.model, args.overrides, device=args.device, dtype=args.dtype).eval()
    dtype = next(model.parameters()).dtype
    print(f"model {args.model} ({model.num_parameters / 1e6:.1f}M params, {dtype}), device {args.device}, "
          f"torch threads {torch.get_num_threads()}, {args.requests} requests/client x {args.max_tokens} tokens, "
          "temperature 0")
    results: dict[tuple[str, int], dict] = {}
    for mode, max_batch in (("batched", args.max_batch), ("serial", 1)):
        with ServerThread(model, args.model, max_batch=max_batch) as srv:
            run_clients(srv.base_url, args.model, 2, 1, 8)  # warm-up
            for c in levels:
                steps0 = srv.engine.stats.decode_steps
                rows0 = srv.engine.stats.rows_decoded
                r = run_clients(srv.base_url, args.model, c, args.requests, args.max_tokens)
                steps = srv.engine.stats.decode_steps - steps0
                r["batch"] = (srv.engine.stats.rows_decoded - rows0) / max(1, steps)
                results[mode, c] = r
    print(f"\n{'server':<8} {'clients':>7} {'req/s':>8} {'tok/s':>9} {'p50 s':>7} {'p95 s':>7} {'mean batch':>10}")
    for (mode, c), r in results.items():
        print(f"{mode:<8} {c:>7} {r['req_s']:>8.2f} {r['tok_s']:>9.1f} {r['p50']:>7.3f} {r['p95']:>7.3f} "
              f"{r['batch']:>10.2f}")
    print(f"\n{'clients':>7} {'tok/s batched/serial':>21} {'p50 batched/serial':>19}")
    for c in levels:
        b, s = results["batched", c], results["serial", c]
        print(f"{c:>7} {b['tok_s'] / s['tok_s']:>20.2f}x {b['p50'] / s['p50']:>18.2f}x")


if __name__ == "__main__":
    main()
