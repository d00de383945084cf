"""Mixture of experts against transformers.MixtralForCausalLM (tiny random weights, float32, eager
attention): logits, each layer's router choices, the load-balancing loss and the total loss; and
the runtime's own promises: sparse dispatch equals the dense formula, KV-cache decoding equals
the full forward, per-layer MoE ranges build and train."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import zoo
from zoo.runtime.modules.moe import Experts, MoE, load_balancing_loss, record_routing

TINY = ["arch.dim=64", "arch.n_layers=3", "arch.vocab_size=128", "arch.max_seq_len=256", "arch.attention.n_heads=4",
        "arch.attention.n_kv_heads=2", "arch.ffn.n_experts=6", "arch.ffn.top_k=2", "arch.ffn.expert.hidden_dim=48"]
ATOL = RTOL = 1e-4


def tiny(*extra: str, backend: str = "eager") -> Any:
    m = zoo.build("mixtral-8x7b", TINY + list(extra), backend=backend, seed=1).eval()
    with torch.no_grad():  # bigger weights than the init's, so that logits and routing are far from uniform
        for p in m.parameters():
            if p.dim() > 1:
                p.mul_(5.0)
    return m


def mixtral_from(m: Any) -> Any:
    """transformers' Mixtral holding exactly `m`'s weights (its in-memory, fused layout; strict)."""
    from transformers import MixtralConfig, MixtralForCausalLM

    from zoo.formats.export import external_state

    a = m.spec.arch
    blk = a.block(0)
    att, ffn = blk.attention, blk.ffn
    cfg = MixtralConfig(vocab_size=a.vocab_size, hidden_size=a.dim, intermediate_size=ffn.hidden_dim,
                        num_hidden_layers=a.n_layers, num_attention_heads=att.n_heads, num_key_value_heads=att.n_kv_heads,
                        head_dim=att.head_dim, num_local_experts=ffn.n_experts, num_experts_per_tok=ffn.top_k,
                        router_aux_loss_coef=ffn.router.aux_loss_coef, rms_norm_eps=blk.norm.eps,
                        max_position_embeddings=a.max_seq_len, tie_word_embeddings=False,
                        rope_parameters={"rope_type": "default", "rope_theta": att.rope.theta},
                        attn_implementation="eager")
    ref = MixtralForCausalLM(cfg).float().eval()
    state = {k: v.detach().float() for k, v in external_state(m, "hf-mixtral-fused").items()}
    ref.load_state_dict(state, strict=True)
    return ref


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_logits_and_router_choices_match_mixtral(backend: str) -> None:
    m = tiny(backend=backend)
    ref = mixtral_from(m)
    tokens = torch.randint(0, 128, (2, 19))
    with torch.no_grad(), record_routing(m) as routing:
        ours = m(tokens)
    with torch.no_grad():
        out = ref(tokens, output_router_logits=True)
    assert out.logits.abs().max() > 1.0
    torch.testing.assert_close(ours, out.logits, atol=ATOL, rtol=RTOL)
    assert len(routing.logits) == len(out.router_logits) == 3
    k = m.spec.arch.block(0).ffn.top_k
    for ours_l, chosen, theirs_l in zip(routing.logits, routing.chosen, out.router_logits):
        torch.testing.assert_close(ours_l, theirs_l, atol=ATOL, rtol=RTOL)
        theirs = torch.topk(torch.softmax(theirs_l.float(), -1), k, -1).indices
        assert torch.equal(chosen, theirs)
    # routing is not degenerate: several experts get tokens in every layer
    assert all(len(c.unique()) >= 4 for c in routing.chosen)


def test_aux_loss_and_total_loss_match_mixtral() -> None:
    m = tiny()
    ref = mixtral_from(m)
    tokens = torch.randint(0, 128, (2, 17))
    with torch.no_grad():
        loss = m.loss(tokens)
        out = ref(tokens, labels=tokens, output_router_logits=True)
    torch.testing.assert_close(m.last_aux_loss, out.aux_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, out.loss, atol=1e-5, rtol=1e-5)
    assert m.last_aux_loss > 1.0  # E * sum f_i p_i is ~1 when balanced (f sums to top_k = 2 here: ~2)
    assert abs(loss - m.last_aux_loss * 0.02 - torch.nn.functional.cross_entropy(
        m(tokens)[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())) < 1e-5


def test_aux_loss_with_padding_matches_mixtral() -> None:
    m = tiny()
    ref = mixtral_from(m)
    tokens = torch.randint(3, 128, (3, 13))
    mask = torch.ones_like(tokens)
    mask[0, 9:] = 0  # right padding: positions agree without position ids
    mask[2, 4:] = 0
    labels = tokens.masked_fill(mask == 0, -100)
    with torch.no_grad():
        loss = m.loss(tokens, attention_mask=mask)
        out = ref(tokens, attention_mask=mask, labels=labels, output_router_logits=True)
    torch.testing.assert_close(m.last_aux_loss, out.aux_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, out.loss, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_load_balancing_loss_is_transformers_formula(top_k: int) -> None:
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    g = torch.Generator().manual_seed(0)
    logits = tuple(torch.randn(2 * 7, 5, generator=g) * 3 for _ in range(4))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    for am in (None, mask):
        ours = load_balancing_loss(logits, 5, top_k, am)
        theirs = load_balancing_loss_func(logits, 5, top_k, am)
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-6)


def _dense_moe(moe: MoE, x: torch.Tensor) -> torch.Tensor:
    """The formula with every expert run on every token (the reference sparse dispatch avoids)."""
    cfg = moe.cfg
    flat = x.reshape(-1, x.shape[-1])
    probs = torch.softmax(moe.router(flat).float(), -1)
    w, idx = torch.topk(probs, cfg.top_k, -1)
    if cfg.normalize_top_k:
        w = w / w.sum(-1, keepdim=True)
    gates = torch.zeros_like(probs).scatter(1, idx, w)  # (tokens, E), zero off the top k
    outs = torch.stack([moe.experts.expert(e, flat) for e in range(cfg.n_experts)], 1)  # (tokens, E, dim)
    return (outs * gates[..., None]).sum(1).reshape(x.shape)


@pytest.mark.parametrize("extra", [[], ["arch.ffn.router.normalize_top_k=false"],
                                   ["arch.ffn.expert={kind: gelu-mlp, hidden_dim: 40, bias: false}"],
                                   ["arch.ffn.top_k=1"]])
def test_sparse_dispatch_equals_the_dense_formula_and_runs_each_token_k_times(extra: list[str],
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    m = tiny(*extra)
    moe = m.blocks[1].ffn
    x = torch.randn(3, 11, 64)
    rows: list[int] = []
    real = Experts.expert

    def counting(self: Experts, i: int, part: torch.Tensor) -> torch.Tensor:
        rows.append(part.shape[0])
        return real(self, i, part)

    with torch.no_grad():
        dense = _dense_moe(moe, x)
        monkeypatch.setattr(Experts, "expert", counting)
        sparse = moe(x)
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=1e-5)
    assert sum(rows) == 33 * moe.cfg.top_k  # each token through its k experts only, none densely


def test_decode_with_kv_cache_equals_full_forward() -> None:
    m = tiny()
    tokens = torch.randint(0, 128, (2, 14))
    with torch.no_grad():
        full = m(tokens)
        cache = m.new_cache(2, 32)
        steps = [m(tokens[:, :6], cache=cache)] + [m(tokens[:, t:t + 1], cache=cache) for t in range(6, 14)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    out = m.generate(tokens[:, :5].tolist(), max_new_tokens=4)
    assert len(out) == 2 and all(len(r) == 4 for r in out)


def test_gradients_reach_router_and_only_used_experts() -> None:
    m = tiny().train()
    tokens = torch.randint(0, 128, (1, 3))  # 3 tokens x top-2: at most 6 of 6 experts per layer
    m.loss(tokens).backward()
    moe = m.blocks[0].ffn
    assert moe.router.weight.grad is not None and moe.router.weight.grad.abs().sum() > 0
    with torch.no_grad(), record_routing(m) as routing:
        m(tokens)
    used = set(routing.chosen[0].flatten().tolist())
    touched = {e for e in range(6) if moe.experts.down.grad[e].abs().sum() > 0}
    assert touched == used


def test_per_layer_moe_range_builds_counts_and_trains() -> None:
    over = ['arch.layers={"1-2": {ffn: {kind: moe, n_experts: 4, top_k: 1, expert: {kind: swiglu, hidden_dim: 32}, '
            'router: {aux_loss_coef: 0.1}}}}']
    m = zoo.build("llama-2-7b", ["arch.dim=64", "arch.n_layers=4", "arch.vocab_size=96", "arch.ffn.hidden_dim=128",
                                 "arch.attention.n_heads=4"] + over, backend="eager", seed=0)
    names = set(m.state_dict())
    assert "blocks.0.ffn.gate.weight" in names and "blocks.3.ffn.up.weight" in names
    assert {"blocks.1.ffn.router.weight", "blocks.2.ffn.experts.gate", "blocks.2.ffn.experts.down"} <= names
    assert tuple(m.state_dict()["blocks.1.ffn.experts.down"].shape) == (4, 64, 32)
    acc = m.compiled.accounting
    assert acc.params == sum(p.numel() for p in m.parameters())
    assert acc.params - acc.active_params == 2 * 3 * (3 * 32 * 64)  # 3 of 4 experts idle in 2 layers
    loss = m.loss(torch.randint(0, 96, (2, 9)))
    loss.backward()
    assert m.last_aux_loss is not None and m.blocks[1].ffn.router.weight.grad is not None
