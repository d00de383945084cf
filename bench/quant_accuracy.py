"""Accuracy of weight-only int8 / int4 (issue #18, point 4): the loss of each quantized model
against its float32 original, as a relative change.

- tiny-code (shipped, zoo/models/tiny-code): next-token loss on its held-out split (the stdlib
  files the recipe held out, zoo/recipes/tiny_code.py), `--seqs` windows of `--len` tokens;
- a random-weight ~134M Llama (bench/decode.py's shape, weights N(0, 0.08)): a random model
  has no held-out text, so its "held-out data" is text *it* writes: sequences sampled from the
  float32 model (temperature 1); the loss of each model on them, and KL(float || quantized) and
  top-1 agreement per position.

Also the README prompt's greedy text of tiny-code, int8 against float (64 tokens).

    .venv/bin/python bench/quant_accuracy.py            # the table (about a minute on 2 cores)
    .venv/bin/python bench/quant_accuracy.py --quick    # fewer tokens
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo  # noqa: E402
from zoo.checkpoint.quantize import quantize_model  # noqa: E402

SCHEMES = {"int8": {"kind": "int8"}, "int4 g32": {"kind": "int4", "group_size": 32},
           "int4 g64": {"kind": "int4", "group_size": 64}, "int4 g128": {"kind": "int4", "group_size": 128},
           "int4 g32 asym": {"kind": "int4", "group_size": 32, "symmetric": False}}
LLAMA_134M = ["arch.dim=768", "arch.n_layers=12", "arch.attention.n_heads=12", "arch.vocab_size=32000",
              "arch.ffn.hidden_dim=2048", "arch.max_seq_len=2048"]
README_PROMPT = "def fibonacci(n):"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


@torch.no_grad()
def mean_loss(model: torch.nn.Module, seqs: torch.Tensor, batch: int = 4) -> float:
    total, n = 0.0, 0
    for i in range(0, len(seqs), batch):
        x = seqs[i:i + batch]
        logits = model(x[:, :-1]).float()
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum").item()
        n += x[:, 1:].numel()
    return total / n


@torch.no_grad()
def agreement(ref: torch.nn.Module, model: torch.nn.Module, seqs: torch.Tensor, batch: int = 4) -> tuple[float, float]:
    """Mean KL(ref || model) per position (nats) and the share of positions whose argmax agrees."""
    kl, agree, n = 0.0, 0, 0
    for i in range(0, len(seqs), batch):
        x = seqs[i:i + batch, :-1]
        lp = F.log_softmax(ref(x).float(), -1)
        lq = F.log_softmax(model(x).float(), -1)
        kl += (lp.exp() * (lp - lq)).sum().item()
        agree += (lp.argmax(-1) == lq.argmax(-1)).sum().item()
        n += x.numel()
    return kl / n, agree / n


def tiny_code_heldout(model: torch.nn.Module, n_seqs: int, length: int) -> torch.Tensor:
    from zoo.recipes.tiny_code import read_texts, split_corpus

    _, held = split_corpus()
    ids: list[int] = []
    for text in read_texts(sorted(held)):
        ids += model.tokenizer.encode(text, bos=False)
        if len(ids) >= n_seqs * length:
            break
    return torch.tensor(ids[:n_seqs * length]).view(n_seqs, length)


def table(rows: list[list[str]], head: list[str]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def run_tiny_code(n_seqs: int, length: int) -> str:
    f = zoo.load("tiny-code", dtype="float32")
    seqs = tiny_code_heldout(f, n_seqs, length)
    base = mean_loss(f, seqs)
    rows = [["float32", f"{base:.4f}", "", "", ""]]
    for name, section in SCHEMES.items():
        try:
            q = quantize_model(copy.deepcopy(f), section)
        except zoo.ZooError as e:
            rows.append([name, "n/a", "", "", str(e).splitlines()[-1][:90]])
            continue
        loss = mean_loss(q, seqs)
        kl, top1 = agreement(f, q, seqs)
        rows.append([name, f"{loss:.4f}", f"{100 * (loss - base) / base:+.2f} %", f"{kl:.5f}", f"{100 * top1:.1f} %"])
    text = f"tiny-code, held-out stdlib split: {n_seqs} x {length} tokens\n\n"
    text += table(rows, ["weights", "loss", "vs float32", "KL(float‖q)", "top-1 agrees"])
    ft = f.generate_text(README_PROMPT, max_new_tokens=64)
    qt = quantize_model(copy.deepcopy(f), SCHEMES["int8"]).generate_text(README_PROMPT, max_new_tokens=64)
    text += f"\n\nREADME prompt {README_PROMPT!r}, 64 greedy tokens: int8 {'==' if qt == ft else '!='} float32"
    return text


def run_llama(n_seqs: int, length: int, std: float = 0.08) -> str:
    m = zoo.build("llama-2-7b", LLAMA_134M, seed=0).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    prompts = torch.randint(0, 32000, (n_seqs, 4), generator=gen).tolist()
    out = m.generate(prompts, max_new_tokens=length - 4, temperature=1.0, seed=0)
    seqs = torch.tensor([p + o for p, o in zip(prompts, out)])
    base = mean_loss(m, seqs)
    rows = [["float32", f"{base:.4f}", "", "", ""]]
    for name, section in SCHEMES.items():
        q = quantize_model(copy.deepcopy(m), section)
        loss = mean_loss(q, seqs)
        kl, top1 = agreement(m, q, seqs)
        rows.append([name, f"{loss:.4f}", f"{100 * (loss - base) / base:+.2f} %", f"{kl:.5f}", f"{100 * top1:.1f} %"])
        del q
    text = f"random-weight Llama {m.num_parameters / 1e6:.0f}M (weights N(0, {std})), on {n_seqs} x {length} tokens it " \
           "sampled itself (temperature 1)\n\n"
    return text + table(rows, ["weights", "loss", "vs float32", "KL(float‖q)", "top-1 agrees"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer tokens")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--std", type=float, default=0.08, help="the random Llama's weight std (0.02: zoo's init)")
    ap.add_argument("--only", choices=["tiny-code", "llama"], default=None, help="one of the two tables")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n, length = (4, 256) if args.quick else (16, 512)
    print(f"CPU: {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    if args.only != "llama":
        print(run_tiny_code(n, length), flush=True)
        print()
    if args.only != "tiny-code":
        print(run_llama(n // 2, length // 2, args.std), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
