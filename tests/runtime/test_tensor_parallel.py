"""Tensor-parallel inference on 2 gloo processes: a tiny model of each family with a plan
(LLaMA in transformers' layout, whose q/k rows are permuted on read, and in zoo's canonical one;
Code Llama; Mixtral-style MoE; MoE with a gated shared expert; multi-token heads; Pixtral, its
vision encoder split too) saved to a
folder, built on meta, parallelized by the sharding plan with DTensor, each rank reading only
its slices; logits equal the single-process model's and greedy tokens are equal."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from zoo.compiler.errors import UsageError
from zoo.compiler.frontend import SpecResolver, spec_from_text

import zoo
from tests.spawned import spawn_ranks
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
#: Code Llama: rope theta 1e6, infilling tokens
CODE = SPEC.replace("name: tiny-tp", "name: tiny-tp-code").replace("llama/llama-2-7b", "codellama/codellama-7b") + \
    "tokenizer: {infill: {prefix_id: 90, suffix_id: 91, middle_id: 92, eot_id: 93}}\n"
#: Mixtral-style: 4 SwiGLU experts, top 2; every expert cut on its hidden dim
MOE = SPEC.replace("name: tiny-tp", "name: tiny-tp-moe").replace("llama/llama-2-7b", "mixtral/mixtral-8x7b").replace(
    "ffn: {kind: swiglu, hidden_dim: 96}", "ffn: {kind: moe, n_experts: 4, top_k: 2, expert: {kind: swiglu, hidden_dim: 48}}")
#: Qwen-MoE-style: a sigmoid-gated shared expert (its own colwise/rowwise plan) beside the routed ones
SHARED = MOE.replace("name: tiny-tp-moe", "name: tiny-tp-shared").replace(
    "top_k: 2, expert:", "top_k: 2, shared: {kind: swiglu, hidden_dim: 64}, shared_gate: true, expert:")
#: (spec, layout saved, backend): the default backend (sdpa, its native decode step) and eager
CASES = {"llama-hf-layout": (SPEC, None, None), "llama-canonical": (SPEC, "canonical", "eager"),
         "code-llama": (CODE, None, None), "mixtral-moe": (MOE, None, None),
         "moe-shared-expert": (SHARED, "canonical", "eager"), "multi-token": (MTP, None, None)}
PROMPT = [[1, 5, 9, 33, 60, 2, 17]]
LIMIT_S = 120  # 2 ranks loading and generating; CI has 2 cores


def spec(text: str = SPEC):
    return spec_from_text(text, resolver=SpecResolver([specs_root()]))


def greedy(net: torch.nn.Module, tokens: torch.Tensor, n: int) -> list[int]:
    out = []
    for _ in range(n):
        nxt = net(tokens)[:, -1].argmax(-1, keepdim=True)
        out.append(int(nxt))
        tokens = torch.cat([tokens, nxt], dim=1)
    return out


def run(rank: int, world: int, store: str, folder: str, out: str, mtp: bool, moe: bool, backend: str | None) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)  # no port to race for
    try:
        net = zoo.load(folder, tp=world, backend=backend, dtype="float32")
        net.eval()
        with torch.no_grad():
            tokens = torch.tensor(PROMPT)
            logits = net(tokens)
            toks = greedy(net, tokens, 8)
            cached = net.generate(PROMPT, max_new_tokens=8)[0]  # KV cache of the local kv heads
            sampled = net.generate(PROMPT * 2, max_new_tokens=8, temperature=0.9, top_p=0.95, seed=3)
            speculative = net.generate_speculative(PROMPT, 8)[0][0] if mtp else None
        attn = net.blocks[0].attn
        assert attn.q.weight.to_local().shape == (32, 64) and attn.o.weight.to_local().shape == (64, 32)
        assert (attn.cfg.n_heads, attn.cfg.n_kv_heads) == (2, 1)
        assert net.embed.weight.to_local().shape == (48, 64)
        assert mtp or net.output.weight.to_local().shape == (48, 64)
        if moe:
            ex = net.blocks[1].ffn.experts
            assert ex.up.to_local().shape == (4, 24, 64) and ex.down.to_local().shape == (4, 64, 24)
            assert net.blocks[1].ffn.router.weight.shape == (4, 64)  # replicated: every rank routes alike
        else:
            assert net.blocks[1].ffn.down.weight.to_local().shape == (64, 48)
        if rank == 0:
            torch.save({"logits": logits, "tokens": toks, "cached": cached, "sampled": sampled,
                        "speculative": speculative}, out)
        dist.barrier()  # both ranks done before the group goes (gloo aborts a rank torn down mid-exchange)
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
@pytest.mark.parametrize("case", list(CASES))
def test_tp2_equals_one_process(tmp_path: Path, case: str) -> None:
    text, layout, backend = CASES[case]
    torch.manual_seed(0)
    m = zoo.build(spec(text), backend=backend)
    m.eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" not in name:
                p.normal_(0, 0.08)  # large enough that attention and routing are far from uniform
    m.save(tmp_path / "m", layout=layout)
    with torch.no_grad():
        ref = m(torch.tensor(PROMPT)).float()
        ref_tokens = greedy(m, torch.tensor(PROMPT), 8)
        ref_sampled = m.generate(PROMPT * 2, max_new_tokens=8, temperature=0.9, top_p=0.95, seed=3)
    out = tmp_path / "tp.pt"
    spawn_ranks(run, (2, str(tmp_path / "store"), str(tmp_path / "m"), str(out), text == MTP, "moe" in text, backend), 2,
                LIMIT_S, f"tensor-parallel {case}")
    got = torch.load(out)
    assert torch.allclose(got["logits"], ref, atol=1e-5, rtol=0), (got["logits"] - ref).abs().max()
    assert got["tokens"] == ref_tokens == got["cached"]
    assert got["sampled"] == ref_sampled  # same seed, same gathered logits: the same samples
    assert got["speculative"] in (None, ref_tokens)


def test_tp_needs_a_process_group(tmp_path: Path) -> None:
    zoo.build(spec()).save(tmp_path / "m")
    with pytest.raises(UsageError, match="process group of 2 ranks"):
        zoo.load(tmp_path / "m", tp=2)
    with pytest.raises(UsageError, match="tp must be"):
        zoo.load(tmp_path / "m", tp=0)


def run_vlm(rank: int, world: int, store: str, folder: str, out: str) -> None:
    from tests.runtime.test_pixtral_parity import images, prompt

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        net = zoo.load(folder, tp=world, dtype="float32")
        assert net.vision.blocks[0].attn.q.weight.to_local().shape[0] * 2 == net.vision.blocks[0].attn.q.weight.shape[0]
        imgs = images()[:2]
        with torch.no_grad():
            logits = net(torch.tensor([prompt(imgs)]), images=imgs)
        if rank == 0:
            torch.save(logits, out)
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_tp2_vision_language_model_equals_one_process(tmp_path: Path) -> None:
    """Pixtral: the vision encoder's attention and FFN split by their kinds' plans like the text decoder's."""
    from tests.runtime.test_pixtral_parity import images, prompt, tiny

    m = tiny("sdpa")
    m.save(tmp_path / "m")
    imgs = images()[:2]
    with torch.no_grad():
        ref = m(torch.tensor([prompt(imgs)]), images=imgs)
    spawn_ranks(run_vlm, (2, str(tmp_path / "store"), str(tmp_path / "m"), str(tmp_path / "v.pt")), 2, LIMIT_S,
                "tensor-parallel Pixtral")
    got = torch.load(tmp_path / "v.pt")
    assert ref.abs().max() > 1.0
    assert torch.allclose(got, ref, atol=1e-5, rtol=0), (got - ref).abs().max()
