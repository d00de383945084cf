"""Self-speculative decoding vs plain greedy decoding of the same multi-token model, on held-out
Python prompts, batch 1, CPU; plus held-out loss of the 4-token model next to a next-token
baseline of the same size trained on the same tokens.

    .venv/bin/python bench/mtp_speedup.py                                # the shipped tiny-code
    .venv/bin/python bench/mtp_speedup.py --model runs/tiny-code/step-N --baseline runs/tiny-ntp/step-N

Outputs are checked equal token for token before any speed is reported.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo  # noqa: E402
from zoo.recipes.tiny_code import read_texts, split_corpus  # noqa: E402


def prompts_from_held_out(tok, n: int, prompt_tokens: int) -> list[list[int]]:  # type: ignore[no-untyped-def]
    _, held = split_corpus()
    out = []
    for text in read_texts(held):
        ids = tok.encode(text, bos=False)
        if len(ids) > prompt_tokens * 2:
            out.append(ids[:prompt_tokens])
        if len(out) == n:
            break
    return out


def held_out_loss(model, tok, tokens: int = 65536, seq: int = 256) -> float:  # type: ignore[no-untyped-def]
    """Next-token (head 0) cross-entropy on the held-out files, per token."""
    _, held = split_corpus()
    ids: list[int] = []
    for text in read_texts(held):
        ids += tok.encode(text, bos=False, eos=True)
        if len(ids) >= tokens + 1:
            break
    data = torch.tensor(ids[: tokens // seq * seq + 1])
    x = data[:-1].view(-1, seq)
    y = data[1:].view(-1, seq)
    total = 0.0
    with torch.no_grad():
        for i in range(0, x.shape[0], 8):
            logits = model(x[i:i + 8])
            total += torch.nn.functional.cross_entropy(logits.flatten(0, 1), y[i:i + 8].flatten(), reduction="sum").item()
    return total / y.numel()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-code")
    ap.add_argument("--baseline", default=None, help="a next-token model of the same size, same tokens")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32", help="float32, or bfloat16 (as tiny-code ships)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    m = zoo.load(args.model, dtype=args.dtype).eval()
    tok = m.tokenizer
    prompts = prompts_from_held_out(tok, args.prompts, args.prompt_tokens)
    stops = [tok.eos_id]
    g_time = s_time = 0.0
    g_tokens = s_tokens = forwards = 0
    for p in prompts:
        m.generate([p], max_new_tokens=4)  # warm-up
        t = time.perf_counter()
        greedy = m.generate([p], max_new_tokens=args.new, stop_tokens=stops)[0]
        g_time += time.perf_counter() - t
        t = time.perf_counter()
        spec, stats = m.generate_speculative([p], max_new_tokens=args.new, stop_tokens=stops)
        s_time += time.perf_counter() - t
        if spec[0] != greedy:
            print("MISMATCH: speculative output differs from greedy", file=sys.stderr)
            return 1
        g_tokens += len(greedy)
        s_tokens += len(spec[0])
        forwards += stats.forwards
    print(f"model {args.model}: {sum(p.numel() for p in m.parameters()) / 1e6:.1f}M params, "
          f"{m.n_future} heads, {args.dtype}, {args.threads} threads, {len(prompts)} held-out prompts of "
          f"{args.prompt_tokens} tokens")
    print(f"\n{'decoding (batch 1)':<28} {'tokens/s':>9} {'tokens/forward':>15}")
    print(f"{'greedy (next-token)':<28} {g_tokens / g_time:>9.1f} {1.0:>15.2f}")
    print(f"{'self-speculative':<28} {s_tokens / s_time:>9.1f} {s_tokens / max(1, forwards):>15.2f}")
    print(f"speed-up: {(s_tokens / s_time) / (g_tokens / g_time):.2f}x (outputs identical)")
    rows = [(args.model, held_out_loss(m, tok))]
    if args.baseline:
        b = zoo.load(args.baseline, dtype="float32").eval()
        rows.append((args.baseline, held_out_loss(b, tok)))
    print(f"\n{'model':<40} {'held-out next-token loss':>25}")
    for name, loss in rows:
        print(f"{name:<40} {loss:>25.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
