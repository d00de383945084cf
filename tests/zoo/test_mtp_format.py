"""The released multi-token checkpoints' Meta layout (layers = trunk + next-token head,
extra_heads = the other heads): export, detection and loading with equal logits per head."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import zoo
from zoo.formats.export import export_meta

TINY = ["arch.dim=64", "arch.n_layers=5", "arch.vocab_size=64", "arch.ffn.hidden_dim=96", "arch.max_seq_len=256",
        "arch.attention.n_heads=4"]


def test_meta_mtp_round_trip_keeps_every_head(tmp_path: Path) -> None:
    m = zoo.build("mtp-7b-200b-4", TINY, seed=3).eval()
    folder = export_meta(m, tmp_path / "7B_200B_4", shards=2)
    params = json.loads((folder / "params.json").read_text())
    assert params["n_future_tokens"] == 4 and params["n_layers"] == 5
    state = {}
    for f in sorted(folder.glob("consolidated.*.pth")):
        state.update(torch.load(f, weights_only=True, mmap=True))
    # the released layout: L-n+1 = 2 `layers`, n-1 = 3 `extra_heads`
    assert {k.split(".")[1] for k in state if k.startswith("layers.")} == {"0", "1"}
    assert {k.split(".")[1] for k in state if k.startswith("extra_heads.")} == {"0", "1", "2"}
    loaded = zoo.load(folder)  # detected from params.json (n_future_tokens) and the extra_heads keys
    assert loaded.spec.arch.heads.n_future == 4
    tokens = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens, all_heads=True), m(tokens, all_heads=True), atol=1e-5, rtol=1e-5)
    # Meta's head order: layers.{L-n} is head 0 (next token), extra_heads.j is head j+1
    sd = m.state_dict()
    w2 = torch.cat([torch.load(f, weights_only=True, mmap=True)["extra_heads.0.feed_forward.w2.weight"]
                    for f in sorted(folder.glob("consolidated.*.pth"))], dim=1)
    torch.testing.assert_close(w2, sd["heads.1.ffn.down.weight"])
    w2 = torch.cat([torch.load(f, weights_only=True, mmap=True)["layers.1.feed_forward.w2.weight"]
                    for f in sorted(folder.glob("consolidated.*.pth"))], dim=1)
    torch.testing.assert_close(w2, sd["heads.0.ffn.down.weight"])
