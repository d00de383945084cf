"""Tensor-parallel inference on 2 gloo processes: a tiny LLaMA saved to a folder, built on
meta, parallelized by the sharding plan with DTensor, each rank reading only its slices of the
safetensors file; logits equal the single-process model's and greedy tokens are equal."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import zoo
from zoo.compiler.errors import UsageError
from zoo.compiler.frontend import SpecResolver, spec_from_text
from zoo.catalog import specs_root

SPEC = """
name: tiny-tp
extends: llama/llama-2-7b
arch:
  dim: 64
  n_layers: 2
  vocab_size: 96
  max_seq_len: 64
  attention: {n_heads: 4, n_kv_heads: 2}
  ffn: {kind: swiglu, hidden_dim: 96}
"""
#: multi-token prediction: 2 head blocks over the trunk, tied embeddings (the logits read embed)
MTP = SPEC.replace("name: tiny-tp", "name: tiny-tp-mtp").replace("n_layers: 2", "n_layers: 4") + "  tie_embeddings: true\n  heads: {kind: multi_token, n_future: 2}\n"
PROMPT = [[1, 5, 9, 33, 60, 2, 17]]


def spec(text: str = SPEC):
    return spec_from_text(text, resolver=SpecResolver([specs_root()]))


def greedy(net: torch.nn.Module, tokens: torch.Tensor, n: int) -> list[int]:
    out = []
    for _ in range(n):
        nxt = net(tokens)[:, -1].argmax(-1, keepdim=True)
        out.append(int(nxt))
        tokens = torch.cat([tokens, nxt], dim=1)
    return out


def run(rank: int, world: int, store: str, folder: str, out: str, mtp: bool) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)  # no port to race for
    try:
        net = zoo.load(folder, tp=world, backend="eager", dtype="float32")
        net.eval()
        with torch.no_grad():
            tokens = torch.tensor(PROMPT)
            logits = net(tokens)
            toks = greedy(net, tokens, 8)
            cached = net.generate(PROMPT, max_new_tokens=8)[0]  # KV cache of the local kv heads
        attn = net.blocks[0].attn
        assert attn.q.weight.to_local().shape == (32, 64) and attn.o.weight.to_local().shape == (64, 32)
        assert (attn.cfg.n_heads, attn.cfg.n_kv_heads) == (2, 1)
        assert net.embed.weight.to_local().shape == (48, 64)
        assert mtp or net.output.weight.to_local().shape == (48, 64)
        assert net.blocks[1].ffn.down.weight.to_local().shape == (64, 48)
        if rank == 0:
            torch.save({"logits": logits, "tokens": toks, "cached": cached}, out)
        dist.barrier()  # both ranks done before the group goes (gloo aborts a rank torn down mid-exchange)
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
@pytest.mark.parametrize("text", [SPEC, MTP], ids=["llama", "multi-token"])
def test_tp2_equals_one_process(tmp_path: Path, text: str) -> None:
    torch.manual_seed(0)
    m = zoo.build(spec(text))
    m.eval()
    m.save(tmp_path / "m")
    with torch.no_grad():
        ref = m(torch.tensor(PROMPT)).float()
        ref_tokens = greedy(m, torch.tensor(PROMPT), 8)
    out = tmp_path / "tp.pt"
    mp.spawn(run, args=(2, str(tmp_path / "store"), str(tmp_path / "m"), str(out), text == MTP), nprocs=2, join=True)
    got = torch.load(out)
    assert torch.allclose(got["logits"], ref, atol=1e-5, rtol=0), (got["logits"] - ref).abs().max()
    assert got["tokens"] == ref_tokens == got["cached"]


def test_tp_needs_a_process_group(tmp_path: Path) -> None:
    zoo.build(spec()).save(tmp_path / "m")
    with pytest.raises(UsageError, match="process group of 2 ranks"):
        zoo.load(tmp_path / "m", tp=2)
    with pytest.raises(UsageError, match="tp must be"):
        zoo.load(tmp_path / "m", tp=0)
