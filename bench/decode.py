"""Decode and prefill speed: zoo against transformers.LlamaForCausalLM, same random weights,
same run. Prints tokens/s, ratios, and the memory-bandwidth roofline.

    .venv/bin/python bench/decode.py            # the issue's ~110M Llama, 2 threads, float32, CPU
    .venv/bin/python bench/decode.py --quick    # a smaller model, seconds (a smoke test)
    .venv/bin/python bench/decode.py --dtype bfloat16   # both sides in bf16 (parity then within bf16 rounding)
    python bench/decode.py --device cuda --dtype bfloat16 --backend xformers [--large]   # on a GPU

Roofline: decoding one token reads every weight once (the embedding table excepted: one row),
so tokens/s can't exceed measured read bandwidth / weight bytes per token.
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
from tests.oracles import hf_llama_from  # noqa: E402

SHAPE = ["arch.dim=768", "arch.n_layers=12", "arch.attention.n_heads=12", "arch.vocab_size=32000",
         "arch.ffn.hidden_dim=2048", "arch.max_seq_len=2048"]
LARGE = ["arch.dim=2048", "arch.n_layers=22", "arch.attention.n_heads=32", "arch.attention.n_kv_heads=4",
         "arch.vocab_size=32000", "arch.ffn.hidden_dim=5632", "arch.max_seq_len=2048"]  # TinyLlama-1.1B's shape
QUICK = ["arch.dim=256", "arch.n_layers=4", "arch.attention.n_heads=4", "arch.vocab_size=8000",
         "arch.ffn.hidden_dim=688", "arch.max_seq_len=1024"]


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def best_of(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        _sync()
        t = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t)
    return min(times)


def best_of_pair(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Min times of a and b, run alternately so both see the same machine load."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, out in ((a, ta), (b, tb)):
            _sync()
            t = time.perf_counter()
            fn()
            _sync()
            out.append(time.perf_counter() - t)
    return min(ta), min(tb)


def read_bandwidth(nbytes: int = 1 << 30, device: str = "cpu") -> float:
    """Bytes/s for summing a buffer too large for the caches (best of 5)."""
    x = torch.ones(nbytes // 4, device=device)
    return nbytes / best_of(lambda: x.sum(), 5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--large", action="store_true", help="a 1.1B model (TinyLlama's shape), for GPUs")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backend", default="sdpa")
    ap.add_argument("--dtype", default="float32", help="float32 (the issue's setting) or bfloat16 (both sides)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.quick:
        args.prompt, args.new, args.prefill, args.repeats = 32, 32, 128, 2

    shape = QUICK if args.quick else LARGE if args.large else SHAPE
    dev = args.device
    m = zoo.build("llama-2-7b", shape, backend=args.backend, seed=0, dtype=args.dtype, device=dev).eval()
    ref = hf_llama_from(m).to(dtype=m.embed.weight.dtype, device=dev).eval()
    ref.generation_config.pad_token_id = 0
    # the peer at its fastest: transformers' default attention (the parity oracle uses eager)
    ref.set_attn_implementation("sdpa")
    vocab = m.spec.arch.vocab_size
    n_params = sum(p.numel() for p in m.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for n, p in m.named_parameters() if n != "embed.weight")

    # parity first: a benchmark of a wrong model means nothing
    prompt = torch.randint(3, vocab, (1, args.prompt), device=dev)
    with torch.no_grad():
        err = (m(prompt) - ref(prompt).logits).abs().max().item()
    ours_tokens = m.generate(prompt, max_new_tokens=16)
    with torch.no_grad():
        hf_tokens = ref.generate(prompt, max_new_tokens=16, do_sample=False, eos_token_id=None)[0, args.prompt:].tolist()
    where = torch.cuda.get_device_name(dev) if dev.startswith("cuda") else f"{args.threads} threads"
    print(f"model: {n_params / 1e6:.1f}M params, {args.dtype}, {where}, backend {args.backend}")
    print(f"parity: max |logit diff| {err:.2e}; greedy tokens equal: {ours_tokens[0] == hf_tokens}")

    rows = []
    for batch in (1, 8):
        prompts = torch.randint(3, vocab, (batch, args.prompt), device=dev)

        def zoo_gen() -> None:
            m.generate(prompts, max_new_tokens=args.new)

        def hf_gen() -> None:
            with torch.no_grad():
                ref.generate(prompts, max_new_tokens=args.new, min_new_tokens=args.new, do_sample=False, eos_token_id=None)

        tz, th = best_of_pair(zoo_gen, hf_gen, args.repeats)
        rows.append((f"decode b={batch} ({args.prompt}+{args.new})", batch * args.new / tz, batch * args.new / th))
    long = torch.randint(3, vocab, (1, args.prefill), device=dev)
    with torch.no_grad():
        tz, th = best_of_pair(lambda: m(long), lambda: ref(long), args.repeats)
    rows.append((f"prefill {args.prefill} tokens", args.prefill / tz, args.prefill / th))

    print(f"\n{'case':<28} {'zoo tok/s':>10} {'hf tok/s':>10} {'zoo/hf':>7}")
    for name, z, h in rows:
        print(f"{name:<28} {z:>10.1f} {h:>10.1f} {z / h:>6.2f}x")

    bw = read_bandwidth(device=dev)
    roof = bw / weight_bytes
    z1 = rows[0][1]
    print(f"\nroofline: {weight_bytes / 1e6:.0f} MB of weights read per token, read bandwidth {bw / 1e9:.1f} GB/s "
          f"-> {roof:.1f} tok/s at batch 1; zoo decodes at {z1:.1f} tok/s = {100 * z1 / roof:.0f}% of it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
