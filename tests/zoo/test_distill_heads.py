"""Self-distillation of the draft heads (zoo/recipes/distill_heads.py): only heads 2..n move, so
greedy output is unchanged, and the heads come to agree with head 1."""

from __future__ import annotations

import numpy as np
import torch

import zoo
from zoo.recipes.distill_heads import (
    agreement,
    continuations,
    distill_loss,
    draft_params,
)

TINY = ["arch.dim=48", "arch.attention.n_heads=2", "arch.ffn.hidden_dim=64", "arch.vocab_size=64",
        "arch.n_layers=6"]


def test_distilling_moves_only_the_draft_heads_and_raises_agreement() -> None:
    torch.manual_seed(0)
    m = zoo.build("tiny/tiny-code", TINY, seed=0).eval()
    with torch.no_grad():  # large random weights: a greedy output that does not just repeat one token
        m.init_weights(std=0.3, generator=torch.Generator().manual_seed(0))
    data = np.random.default_rng(0).integers(3, 64, size=4000).astype(np.uint16)
    seqs = continuations(m, data, n=16, prompt_len=8, new=24, batch=8, seed=0)
    assert seqs.shape == (16, 32)
    prompt = seqs[:2, :8]
    greedy = m.generate(prompt, max_new_tokens=12)
    # the continuation is head 1's greedy output
    assert seqs[:2, 8:20].tolist() == greedy
    frozen = {k: v.clone() for k, v in m.state_dict().items() if not k.startswith(("heads.1.", "heads.2.", "heads.3."))}
    before = agreement(m, seqs, 8)
    params = draft_params(m)
    assert params and all(p.requires_grad for p in params)
    opt = torch.optim.AdamW(params, lr=3e-3)
    m.train()
    for _ in range(40):
        loss = distill_loss(m, seqs, 8)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    after = agreement(m, seqs, 8)
    assert sum(after) > sum(before) + 0.3, (before, after)
    state = m.state_dict()
    assert all(torch.equal(state[k], v) for k, v in frozen.items())  # trunk, head 1, norm, embeddings
    assert m.generate(prompt, max_new_tokens=12) == greedy
    spec, _ = m.generate_speculative(prompt, max_new_tokens=12)
    assert spec == greedy
