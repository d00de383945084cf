"""Qwen2-MoE against transformers.Qwen2MoeForCausalLM (tiny random weights, float32): the shared
expert and its sigmoid gate, top-k without renormalization, q/k/v biases. Logits and router
choices on eager and sdpa, cached decoding and greedy tokens, the load-balancing loss, the MoE
block's bfloat16 numerics, and the parameter count of Qwen1.5-MoE-A2.7B on the meta device.

Weights reach transformers through the hf-qwen2-moe key maps, the same zoo loads with."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

import zoo
from tests.oracles import check_decoding
from zoo.formats import bind, get_format
from zoo.runtime.modules.moe import load_balancing_loss, record_routing

QWEN2_MOE = ["arch.attention.qkv_bias=true", "arch.norm.eps=1e-6", "arch.ffn.shared_gate=true",
             "arch.ffn.router={aux_loss_coef: 0.001, normalize_top_k: false, weight_dtype: activations}"]
TINY = ["arch.dim=64", "arch.n_layers=3", "arch.vocab_size=128", "arch.max_seq_len=256", "arch.attention.n_heads=4",
        "arch.attention.n_kv_heads=2", "arch.ffn.n_experts=8", "arch.ffn.top_k=3", "arch.ffn.expert.hidden_dim=32",
        "arch.ffn.shared={kind: swiglu, hidden_dim: 96}", *QWEN2_MOE]
ATOL = RTOL = 1e-4


def tiny(*extra: str, backend: str = "eager") -> Any:
    m = zoo.build("mixtral-8x7b", TINY + list(extra), backend=backend, seed=1).eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # bigger weights than the init's, so that logits and routing are far from uniform
        for p in m.parameters():
            if p.dim() > 1:
                p.mul_(5.0)
            elif p.abs().sum() == 0:  # the q/k/v biases start at zero: give them values to compare
                p.normal_(0.0, 0.5, generator=g)
    return m


def hf_config(spec: Any, attn: str = "eager") -> Any:
    from transformers import Qwen2MoeConfig

    a = spec.arch
    blk = a.block(0)
    att, ffn = blk.attention, blk.ffn
    return Qwen2MoeConfig(vocab_size=a.vocab_size, hidden_size=a.dim, intermediate_size=ffn.shared.hidden_dim,
                          num_hidden_layers=a.n_layers, num_attention_heads=att.n_heads,
                          num_key_value_heads=att.n_kv_heads, max_position_embeddings=a.max_seq_len,
                          rms_norm_eps=blk.norm.eps, tie_word_embeddings=a.tie_embeddings,
                          rope_parameters={"rope_type": "default", "rope_theta": att.rope.theta},
                          num_experts=ffn.n_experts, num_experts_per_tok=ffn.top_k,
                          moe_intermediate_size=ffn.hidden_dim, shared_expert_intermediate_size=ffn.shared.hidden_dim,
                          norm_topk_prob=ffn.router.normalize_top_k, router_aux_loss_coef=ffn.router.aux_loss_coef,
                          qkv_bias=att.qkv_bias, decoder_sparse_step=1, mlp_only_layers=[],
                          attn_implementation=attn, bos_token_id=1, eos_token_id=2)


def external(m: Any, fmt: str) -> dict[str, torch.Tensor]:
    state = m.state_dict()
    plan = bind(get_format(fmt), m.spec, {k: tuple(v.shape) for k, v in state.items()})
    return {k: v.detach().clone() for k, v in plan.to_external(state)}


def qwen2_moe_from(m: Any, attn: str = "eager") -> Any:
    """transformers' Qwen2-MoE holding exactly `m`'s weights (its in-memory, fused layout; strict)."""
    from transformers import Qwen2MoeForCausalLM

    ref = Qwen2MoeForCausalLM(hf_config(m.spec, attn)).float().eval()
    ref.load_state_dict(external(m, "hf-qwen2-moe-fused"), strict=True)
    return ref


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_logits_and_router_choices_match_transformers(backend: str) -> None:
    m = tiny(backend=backend)
    ref = qwen2_moe_from(m, backend)
    tokens = torch.randint(0, 128, (2, 21), generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), record_routing(m) as routing:
        ours = m(tokens)
    with torch.no_grad():
        out = ref(tokens, output_router_logits=True)
    assert out.logits.abs().max() > 1.0
    torch.testing.assert_close(ours, out.logits, atol=ATOL, rtol=RTOL)
    assert len(routing.logits) == len(out.router_logits) == 3
    for ours_l, chosen, theirs_l in zip(routing.logits, routing.chosen, out.router_logits):
        torch.testing.assert_close(ours_l, theirs_l, atol=ATOL, rtol=RTOL)
        assert torch.equal(chosen, torch.topk(torch.softmax(theirs_l.float(), -1), 3, -1).indices)
        assert len(chosen.unique()) >= 5  # routing is not degenerate: most of the 8 experts get tokens


def test_shared_expert_and_unnormalized_routing_are_what_the_block_computes() -> None:
    """One MoE block by the formula, densely: sum_j p_j expert_j(x) over the top k of a softmax
    over all experts (no renormalization) + sigmoid(w x) * shared(x); the shared term and the
    gate matter (the gate is neither saturated nor constant)."""
    m = tiny()
    moe = m.blocks[1].ffn
    x = torch.randn(2, 9, 64)
    with torch.no_grad():
        flat = x.reshape(-1, 64)
        probs = torch.softmax(moe.router(flat).float(), -1)
        w, idx = torch.topk(probs, 3, -1)
        gates = torch.zeros_like(probs).scatter(1, idx, w)
        routed = sum(gates[:, e, None] * moe.experts.expert(e, flat) for e in range(8))
        sig = torch.sigmoid(moe.shared_gate(flat))
        want = routed + sig * moe.shared(flat)
        torch.testing.assert_close(moe(x).reshape(-1, 64), want, atol=1e-5, rtol=1e-5)
    assert (w.sum(-1) < 0.999).all()  # the kept probabilities do not sum to 1
    assert 0.05 < sig.min() and sig.max() < 0.95 and sig.std() > 0.05
    assert (sig * moe.shared(flat)).norm() > 0.2 * routed.norm()


def _bf16_blocks(m: Any, block_cls: Any, cfg: Any, fmt: str, experts: str) -> tuple[Any, Any]:
    """Layer 1's MoE of `m`, and transformers' `block_cls` holding its weights with the experts
    implementation `experts`, both in bfloat16."""
    prefix = "model.layers.1.mlp."
    cfg._experts_implementation = experts
    block = block_cls(cfg).eval()
    block.load_state_dict({k[len(prefix):]: v for k, v in external(m, fmt).items() if k.startswith(prefix)},
                          strict=True)
    return block.bfloat16(), m.blocks[1].ffn.bfloat16()


def _bits_off(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(share of elements that differ, largest difference in units of b's largest magnitude)."""
    d = (a.float() - b.float()).abs()
    return d.gt(0).float().mean().item(), d.max().item() / b.float().abs().max().item()


def test_moe_block_bfloat16_is_bit_equal_to_transformers() -> None:
    """In bfloat16, Qwen2-MoE rounds the routing weights to the activations' dtype before it
    scales the experts (weight_dtype: activations), sums each token's k terms, then adds the
    gated shared expert: the zoo's block gives the bits of transformers' default experts
    implementation (grouped_mm). Mixtral's float32 routing weights give other bits; transformers'
    eager experts loop (adding expert by expert in bfloat16) is within a rounding."""
    from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeSparseMoeBlock

    m = tiny()
    x = torch.randn(4, 33, 64, generator=torch.Generator().manual_seed(0)).bfloat16()
    with torch.no_grad():
        block, moe = _bf16_blocks(m, Qwen2MoeSparseMoeBlock, hf_config(m.spec), "hf-qwen2-moe-fused", "grouped_mm")
        theirs = block(x)
        assert torch.equal(moe(x), theirs)
        eager, _ = _bf16_blocks(m, Qwen2MoeSparseMoeBlock, hf_config(m.spec), "hf-qwen2-moe-fused", "eager")
        assert _bits_off(moe(x), eager(x))[1] <= 2 ** -7
        moe.cfg = dataclasses.replace(moe.cfg, float32_weights=True)
        assert _bits_off(moe(x), theirs)[0] > 0.05


def test_mixtral_block_bfloat16_is_bit_equal_to_transformers() -> None:
    """The same sum with Mixtral's float32 routing weights."""
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    from tests.runtime.test_moe_parity import mixtral_from
    from tests.runtime.test_moe_parity import tiny as tiny_mixtral

    m = tiny_mixtral()
    x = torch.randn(4, 33, 64, generator=torch.Generator().manual_seed(0)).bfloat16()
    cfg = mixtral_from(m).config
    with torch.no_grad():
        block, moe = _bf16_blocks(m, MixtralSparseMoeBlock, cfg, "hf-mixtral-fused", "grouped_mm")
        assert torch.equal(moe(x), block(x))
        eager, _ = _bf16_blocks(m, MixtralSparseMoeBlock, cfg, "hf-mixtral-fused", "eager")
        assert _bits_off(moe(x), eager(x))[1] <= 2 ** -7


def test_decoding_with_kv_cache_and_greedy_tokens_match() -> None:
    m = tiny()
    check_decoding(m, qwen2_moe_from(m))


def test_aux_loss_and_total_loss_match_transformers() -> None:
    m = tiny()
    ref = qwen2_moe_from(m)
    tokens = torch.randint(3, 128, (3, 13))
    mask = torch.ones_like(tokens)
    mask[0, 9:] = 0  # right padding: positions agree without position ids
    mask[2, 4:] = 0
    for am in (None, mask):
        labels = tokens if am is None else tokens.masked_fill(am == 0, -100)
        with torch.no_grad():
            loss = m.loss(tokens, attention_mask=am)
            out = ref(tokens, attention_mask=am, labels=labels, output_router_logits=True)
        torch.testing.assert_close(m.last_aux_loss, out.aux_loss, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(loss, out.loss, atol=1e-5, rtol=1e-5)
        assert m.last_aux_loss > 2.0  # E * sum f_i P_i: ~top_k (3) when balanced


@pytest.mark.parametrize("top_k", [1, 2, 4])
def test_load_balancing_loss_is_qwen2_moe_formula(top_k: int) -> None:
    from transformers.models.qwen2_moe.modeling_qwen2_moe import load_balancing_loss_func

    g = torch.Generator().manual_seed(0)
    logits = tuple(torch.randn(2 * 7, 6, generator=g) * 3 for _ in range(3))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    for am in (None, mask):
        torch.testing.assert_close(load_balancing_loss(logits, 6, top_k, am), load_balancing_loss_func(logits, 6, top_k, am),
                                   atol=1e-6, rtol=1e-6)


def _meta_params(cfg: Any) -> int:
    from transformers import Qwen2MoeForCausalLM

    with torch.device("meta"):
        ref = Qwen2MoeForCausalLM(cfg)
    return sum(p.numel() for p in ref.parameters())


def test_parameter_counts_equal_transformers_tiny_and_qwen1_5_moe_a2_7b() -> None:
    from transformers import Qwen2MoeConfig

    tiny_spec = zoo.spec("mixtral-8x7b", TINY)
    acc = zoo.compile(tiny_spec).accounting
    assert acc.params == _meta_params(hf_config(tiny_spec)) == 258_560
    # Qwen/Qwen1.5-MoE-A2.7B's config.json
    real = ["arch.dim=2048", "arch.n_layers=24", "arch.vocab_size=151936", "arch.max_seq_len=8192",
            "arch.attention.n_heads=16", "arch.attention.n_kv_heads=16", "arch.ffn.n_experts=60", "arch.ffn.top_k=4",
            "arch.ffn.expert.hidden_dim=1408", "arch.ffn.shared={kind: swiglu, hidden_dim: 5632}", *QWEN2_MOE]
    spec = zoo.spec("mixtral-8x7b", real)
    cfg = Qwen2MoeConfig(vocab_size=151936, hidden_size=2048, intermediate_size=5632, num_hidden_layers=24,
                         num_attention_heads=16, num_key_value_heads=16, num_experts=60, num_experts_per_tok=4,
                         moe_intermediate_size=1408, shared_expert_intermediate_size=5632, tie_word_embeddings=False)
    acc = zoo.compile(spec).accounting
    assert acc.params == _meta_params(cfg) == 14_315_784_192
    expert, shared = 3 * 2048 * 1408, 3 * 2048 * 5632 + 2048  # a routed expert; the shared one and its gate
    assert acc.params - acc.active_params == 24 * 56 * expert  # 56 of 60 routed experts idle per token
    assert acc.active_params == 2_689_173_504  # "A2.7B": the shared expert and its gate count in every layer
    assert acc.params_by_part["ffn"] == 24 * (60 * expert + 60 * 2048 + shared)
    plain = zoo.compile(zoo.spec("mixtral-8x7b", real + ["arch.ffn.shared_gate=false", "arch.ffn.shared=null"]))
    assert acc.flops_per_token - plain.accounting.flops_per_token == 24 * 2 * shared  # run by every token
    assert acc.active_params - plain.accounting.active_params == 24 * shared
    assert "shared swiglu expert (sigmoid gate)" in zoo.compile(spec).explain()
    assert spec.arch.block(0).ffn.describe() == \
        "moe 60x swiglu 1408, top-4 (not renormalized), shared swiglu 5632 (sigmoid-gated)"


@pytest.mark.parametrize("original_format", [True, False])
def test_transformers_save_pretrained_loads_through_the_key_map(tmp_path: Path, original_format: bool) -> None:
    """Both layouts transformers writes (per-expert tensors by default, fused with
    save_original_format=False) bind to the zoo model: the format's alternatives pick the one the
    folder holds, every name and shape matches, and the weights stream in bit-exactly."""
    from zoo.checkpoint import SafetensorsSource
    from zoo.formats import Checkpoint
    from zoo.loading import stream_in

    m = tiny()
    ref = qwen2_moe_from(m)
    ref.save_pretrained(tmp_path, save_original_format=original_format)
    source = SafetensorsSource(tmp_path)
    names = set(source.shapes())
    assert ("model.layers.2.mlp.experts.7.gate_proj.weight" in names) == original_format
    assert ("model.layers.2.mlp.experts.gate_up_proj" in names) == (not original_format)
    assert {"model.layers.0.mlp.shared_expert_gate.weight", "model.layers.0.self_attn.q_proj.bias"} <= names
    fresh = zoo.build(m.spec, backend="eager", init="meta")
    shapes = {n: p.sizes for n, p in fresh.compiled.ir.parameters()}
    plan = Checkpoint(tmp_path, "transformers", m.spec, "hf-qwen2-moe", source, tmp_path).plan(m.spec, shapes)
    assert plan.format.name == ("hf-qwen2-moe" if original_format else "hf-qwen2-moe-fused")
    assert plan.check(source.shapes()).ok
    stream_in(fresh, plan, source, "cpu", None)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in m.state_dict().items())
    tokens = torch.randint(0, 128, (2, 11))
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(tokens), ref(tokens).logits, atol=ATOL, rtol=RTOL)
    from zoo.formats.hf import model_types

    if "qwen2_moe" in model_types():
        loaded = zoo.load(tmp_path, backend="eager")
        with torch.no_grad():
            torch.testing.assert_close(loaded(tokens), ref(tokens).logits, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("fmt", ["hf-qwen2-moe", "hf-qwen2-moe-fused"])
def test_key_maps_round_trip_bit_exactly(fmt: str) -> None:
    m = tiny()
    state = m.state_dict()
    plan = bind(get_format(fmt), m.spec, {k: tuple(v.shape) for k, v in state.items()})
    ext = dict(plan.to_external(state))
    assert {k: tuple(v.shape) for k, v in ext.items()} == plan.external_shapes()
    back = {c: t for b, ts in plan.to_canonical(ext.__getitem__) for c, t in zip(b.canonical, ts)}
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)


def test_spec_rules_and_no_mixtral_config_for_a_shared_expert() -> None:
    from zoo.compiler.errors import SpecError
    from zoo.formats.hf import hf_unsupported, to_hf_config

    with pytest.raises(SpecError, match="shared_gate scales the shared expert"):
        zoo.spec("mixtral-8x7b", ["arch.ffn.shared_gate=true"])
    with pytest.raises(SpecError, match="moe"):  # the shared expert is a dense ffn
        zoo.spec("mixtral-8x7b", ["arch.ffn.shared={kind: moe, n_experts: 2, expert: {kind: swiglu, hidden_dim: 8}}"])
    # Mixtral with a shared expert added passes Mixtral's own refusals: the config.json round trip
    # must still refuse it (or, once transformers' Qwen2-MoE is exported, not write Mixtral's)
    spec = zoo.spec("mixtral-8x7b", [o for o in TINY if o not in QWEN2_MOE])
    why = hf_unsupported(spec)
    assert (why is not None and "shared" in why) or to_hf_config(spec)["model_type"] != "mixtral"
