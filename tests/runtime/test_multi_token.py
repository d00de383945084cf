"""Multi-token prediction: head parity with transformers, the summed loss and its
memory-efficient schedule, and self-speculative decoding equal to greedy."""

from __future__ import annotations

import pytest
import torch

import zoo
from tests.oracles import hf_llama_config, to_hf_names

N = 3
TINY = ["arch.dim=64", "arch.n_layers=4", "arch.vocab_size=64", "arch.ffn.hidden_dim=96", "arch.max_seq_len=256",
        "arch.attention.n_heads=4", f"arch.heads={{kind: multi_token, n_future: {N}}}"]


def _model(seed: int = 0, scale: float = 6.0):  # type: ignore[no-untyped-def]
    m = zoo.build("llama-2-7b", TINY, seed=seed).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:
                p.mul_(scale)
    return m


def test_structure_trunk_plus_heads() -> None:
    m = _model()
    assert len(m.blocks) == 4 - N and len(m.heads) == N and m.n_future == N
    names = {k for k, _ in m.named_parameters()}
    assert {k for k, _ in zoo.compile(m.spec).ir.parameters()} == names
    assert "heads.2.ffn.down.weight" in names


@pytest.mark.parametrize("head", range(N))
def test_each_head_equals_a_llama_of_trunk_plus_that_head(head: int) -> None:
    from transformers import LlamaForCausalLM

    m = _model()
    n_trunk = len(m.blocks)
    cfg = hf_llama_config(m.spec, num_hidden_layers=n_trunk + 1)
    ref = LlamaForCausalLM(cfg).float().eval()
    state = {k: v for k, v in m.state_dict().items() if not k.startswith("heads.")}
    state.update({k.replace(f"heads.{head}.", f"blocks.{n_trunk}."): v for k, v in m.state_dict().items()
                  if k.startswith(f"heads.{head}.")})
    ref.load_state_dict(to_hf_names(state), strict=True)
    tokens = torch.randint(0, 64, (2, 15))
    with torch.no_grad():
        ours = m(tokens, all_heads=True)[:, :, head]
        theirs = ref(tokens).logits
    assert ours.shape == (2, 15, 64)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_loss_is_the_sum_of_head_cross_entropies() -> None:
    import torch.nn.functional as F

    m = _model()
    tokens = torch.randint(0, 64, (2, 12))
    with torch.no_grad():
        logits = m(tokens, all_heads=True)
        expected = sum(F.cross_entropy(logits[:, : 12 - i - 1, i].flatten(0, 1), tokens[:, i + 1:].flatten())
                       for i in range(N))
        torch.testing.assert_close(m.loss(tokens), expected)


def test_memory_efficient_schedule_gives_the_same_gradients() -> None:
    tokens = torch.randint(0, 64, (2, 12))
    grads = []
    losses = []
    for efficient in (False, True):
        m = _model().train()
        if efficient:
            loss = m.loss(tokens, memory_efficient=True)
        else:
            loss = m.loss(tokens)
            loss.backward()
        losses.append(loss.detach())
        grads.append({k: p.grad.clone() for k, p in m.named_parameters()})
    torch.testing.assert_close(losses[0], losses[1])
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], atol=1e-5, rtol=1e-4, msg=k)


@pytest.mark.parametrize("prompts", [[[5, 6, 7, 8]], [[5, 6, 7, 8], [9, 10], [11, 12, 13, 14, 15, 16]]])
@pytest.mark.parametrize("static", [False, True])
def test_speculative_equals_greedy_on_a_random_model(prompts: list[list[int]], static: bool) -> None:
    m = _model(seed=1)
    if static:
        m.backend.prefers_static_cache = True  # exercise the static-cache rollback path
    try:
        greedy = m.generate(prompts, max_new_tokens=20)
        spec, stats = m.generate_speculative(prompts, max_new_tokens=20)
    finally:
        m.backend.__dict__.pop("prefers_static_cache", None)
    assert spec == greedy
    assert stats.forwards <= 20


def _trained_on_a_cycle():  # type: ignore[no-untyped-def]
    """A tiny MTP model that learned a periodic sequence, so its drafts are right most of the time."""
    torch.manual_seed(0)
    m = zoo.build("llama-2-7b", TINY, seed=2).train()
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    cycle = torch.arange(3, 3 + 17)
    seq = cycle.repeat(8)
    for _ in range(120):
        starts = torch.randint(0, 17, (8,))
        batch = torch.stack([seq[s:s + 48] for s in starts])
        opt.zero_grad()
        m.loss(batch).backward()
        opt.step()
    return m.eval(), cycle


def test_speculative_accepts_drafts_and_stays_equal_to_greedy() -> None:
    m, cycle = _trained_on_a_cycle()
    prompts = [cycle[:6].tolist(), cycle[4:13].tolist()]
    greedy = m.generate(prompts, max_new_tokens=30)
    spec, stats = m.generate_speculative(prompts, max_new_tokens=30)
    assert spec == greedy
    assert stats.mean_accepted > 2.0  # with 3 heads at most 3 tokens per forward
    # stop tokens end rows early, identically
    stop = greedy[0][7]
    assert m.generate_speculative(prompts, 30, stop_tokens=[stop])[0] == m.generate(prompts, 30, stop_tokens=[stop])


@pytest.mark.parametrize("static", [False, True])
def test_grouped_heads_equal_the_per_head_loop(static: bool) -> None:
    """Inference runs the heads as one batched block; with padding, a cache and a decode step
    its logits and cache contents equal running the heads one by one."""
    m = _model(seed=2)
    assert m._group is not None
    tokens = torch.tensor([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]])
    mask = tokens != 0
    step = torch.tensor([[13, 14], [15, 16]])
    results = []
    for grouped in (True, False):
        group, m._group = m._group, (m._group if grouped else None)
        try:
            with torch.no_grad():
                cache = m.new_cache(2, 16, static=static)
                first = m(tokens, attention_mask=mask, cache=cache, all_heads=True)
                second = m(step, cache=cache, all_heads=True)
        finally:
            m._group = group
        results.append((first, second, [k[:, :, :7].clone() for k in cache.k]))
    (f1, s1, k1), (f2, s2, k2) = results
    torch.testing.assert_close(f1, f2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s1, s2, atol=1e-5, rtol=1e-5)
    for a, b in zip(k1, k2):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_grouped_heads_follow_weight_updates() -> None:
    m = _model(seed=3)
    x = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        before = m(x, all_heads=True)
        m.heads[1].ffn.down.weight.mul_(0.5)  # in place: the stacked copy must notice
        after = m(x, all_heads=True)
        m._group, group = None, m._group
        reference = m(x, all_heads=True)
        m._group = group
    assert not torch.allclose(before[:, :, 1], after[:, :, 1])
    torch.testing.assert_close(after, reference, atol=1e-5, rtol=1e-5)
