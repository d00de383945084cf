"""Self-distillation of a multi-token model's draft heads: teach heads 2..n what head 1 says.

Self-speculative decoding accepts a draft only when it equals head 1's greedy choice, so what
counts is agreement with head 1, not accuracy on the data. A small model's extra heads are far
from both (tiny-code's heads 2-4 have held-out losses 4.85-5.43 against head 1's 4.07). This
recipe generates head 1's greedy continuations of prompts from the training split, then trains
heads 2..n (only they: trunk, head 1, norm and embeddings stay frozen, so greedy output is
unchanged bit for bit) to predict those continuations, t+i+1 from position t.

    python -m zoo.recipes.distill_heads tiny-code --out runs/tc4-distill        # then --ship

The idea is Medusa's self-distillation (Cai et al. 2024) applied to the paper's own heads; the
table in docs/mtp.md gives the heads' agreement and the speed-up before and after.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


def continuations(model: Any, data: np.ndarray, n: int, prompt_len: int, new: int, batch: int,
                  seed: int) -> torch.Tensor:
    """(n, prompt_len + new) token rows: random training windows and head 1's greedy continuation."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(data) - prompt_len - 1, size=n)
    prompts = torch.from_numpy(np.stack([data[s:s + prompt_len].astype(np.int64) for s in starts]))
    rows = []
    with torch.no_grad():
        for i in tqdm(range(0, n, batch), desc="greedy continuations", unit="batch", leave=False):
            p = prompts[i:i + batch]
            out = model.generate(p, max_new_tokens=new)
            rows.append(torch.cat([p, torch.tensor(out, dtype=torch.long)], 1))
    return torch.cat(rows)


def draft_params(model: Any) -> list[torch.nn.Parameter]:
    """Freeze everything but heads 2..n; return their parameters."""
    model.requires_grad_(False)
    params = []
    for head in list(model.heads)[1:]:
        head.requires_grad_(True)
        params += list(head.parameters())
    return params


def distill_loss(model: Any, seqs: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """Mean over heads 2..n of the cross-entropy against the sequence shifted by i+1, on targets in
    the generated part only (the prompt is data, not head 1's output)."""
    with torch.no_grad():
        h, ctx = model.trunk(seqs)
    positions, layout, _, tables = ctx
    t = seqs.shape[1]
    losses = []
    for i in range(1, model.n_future):
        out = model.norm(model.run_blocks([model.heads[i]], h, positions, layout, None, tables))
        src = slice(max(0, prompt_len - i - 1), t - i - 1)  # positions whose target t+i+1 was generated
        logits = model.logits(out[:, src])
        target = seqs[:, src.start + i + 1: src.stop + i + 1]
        losses.append(F.cross_entropy(logits.flatten(0, 1), target.flatten()))
    return torch.stack(losses).mean()


def agreement(model: Any, seqs: torch.Tensor, prompt_len: int) -> list[float]:
    """Per draft head, how often its argmax equals the generated token it drafts (teacher forcing)."""
    with torch.no_grad():
        logits = model(seqs, all_heads=True)  # (B, T, n, V)
        t = seqs.shape[1]
        out = []
        for i in range(1, model.n_future):
            src = slice(prompt_len - 1, t - i - 1)
            guess = logits[:, src, i].argmax(-1)
            out.append(float((guess == seqs[:, src.start + i + 1: src.stop + i + 1]).float().mean()))
    return out


def main() -> int:
    import zoo

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a multi-token model: a catalog name or a checkpoint folder")
    ap.add_argument("--data", type=Path, default=Path("runs/tiny-code-data/train.bin"), help="uint16 training tokens")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sequences", type=int, default=1536)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new", type=int, default=192)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    model = zoo.load(args.model, dtype="float32").eval()
    if getattr(model, "n_future", 1) < 2:
        raise SystemExit(f"{args.model}: not a multi-token model (one head)")
    data = np.memmap(args.data, dtype=np.uint16, mode="r")
    t0 = time.perf_counter()
    seqs = continuations(model, data, args.sequences, args.prompt_len, args.new, 32, args.seed)
    check = continuations(model, data, 64, args.prompt_len, args.new, 32, args.seed + 1)
    gen_min = (time.perf_counter() - t0) / 60
    before = agreement(model, check, args.prompt_len)
    print(f"generated {seqs.numel():,} tokens in {gen_min:.1f} min; draft heads' agreement before: "
          + ", ".join(f"{a:.3f}" for a in before))

    params = draft_params(model)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    warm = max(1, args.steps // 20)
    g = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    model.train()
    for step in tqdm(range(args.steps), desc="distilling heads", unit="step", leave=False):
        lr = args.lr * min(1.0, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, seqs.shape[0], (args.batch,), generator=g)
        loss = distill_loss(model, seqs[idx], args.prompt_len)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f} lr {lr:.2e}", flush=True)
    model.eval()
    after = agreement(model, check, args.prompt_len)
    summary = {"model": str(args.model), "sequences": args.sequences, "generated_tokens": int(seqs.numel()),
               "steps": args.steps, "batch": args.batch, "lr": args.lr, "generate_minutes": round(gen_min, 2),
               "train_minutes": round((time.perf_counter() - t0) / 60, 2),
               "agreement_before": before, "agreement_after": after}
    path = model.save(args.out)
    (Path(path) / "distill.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
