"""Sparse mixture of experts (Mixtral; Qwen2-MoE; Branch-Train-MiX): out = sum over the k experts a
router picks of g_i(x) * expert_i(x) [+ sigmoid(shared_gate x) * shared(x)].

Routing follows transformers exactly: router logits W x in the activations' dtype, a float32
softmax over all experts, the top k kept and, for Mixtral, renormalized to sum to 1 (the same as
a softmax over the k kept logits; Qwen2-MoE's `norm_topk_prob: false` keeps them as they are).
Mixtral scales the experts' outputs by float32 weights; Qwen2-MoE rounds the weights to the
activations' dtype first (`float32_weights`), which differs below float32. Dispatch is sparse:
the (token, expert) pairs are sorted by expert, each expert runs once on its contiguous slice of
tokens, and each token's k weighted results are summed in one reduction, as transformers 5's
default experts implementation does (bit-equal in bfloat16; no dense E x compute).

Qwen2-MoE's shared expert is a dense FFN module every token runs (its Build comes from the
compiler, so any dense FFN kind works), scaled by sigmoid of a 1-wide bias-free linear when
gated, and added after the routed sum, all in the activations' dtype, as transformers does.

The Switch load-balancing loss (E * sum_i f_i * P_i) needs every MoE layer's router logits of
one forward: `record_routing(model)` collects them, and `CausalLM.loss` adds
aux_loss_coef * loss to the language-model loss.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .build import Build
from .ffn import ACTIVATIONS
from .layers import Linear


@dataclass(frozen=True)
class MoEConfig:
    """A router and n_experts FFNs of one shape (bias-free; gated or a plain MLP), top_k per token;
    optionally a shared dense FFN (built from `shared`) on every token, sigmoid-gated or not."""

    n_experts: int
    top_k: int
    hidden_dim: int  # one expert's
    activation: str = "silu"
    gated: bool = True
    aux_loss_coef: float = 0.01
    normalize_top_k: bool = True
    float32_weights: bool = True  # False: routing weights cast to the activations' dtype (Qwen2-MoE)
    shared: Build | None = None  # the shared expert's module, called with (dim)
    shared_gate: bool = False


class Experts(nn.Module):
    """n_experts FFNs of one shape as stacked weights: gate, up [E, hidden, dim] (no gate for a
    plain MLP expert) and down [E, dim, hidden], each expert's slice laid out like a Linear weight."""

    def __init__(self, dim: int, cfg: MoEConfig):
        super().__init__()
        e, h = cfg.n_experts, cfg.hidden_dim
        self.act = ACTIVATIONS[cfg.activation]
        self.gate = nn.Parameter(torch.empty(e, h, dim)) if cfg.gated else None
        self.up = nn.Parameter(torch.empty(e, h, dim))
        self.down = nn.Parameter(torch.empty(e, dim, h))
        self.reduce: Callable[[torch.Tensor], torch.Tensor] | None = None  # set by tensor parallelism

    def tensor_parallel(self, shard: Callable[[str, nn.Parameter], nn.Parameter],
                        reduce: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Split across tensor-parallel ranks (runtime/distributed/tp.py): `shard` turns each
        weight into its DTensor (every expert cut on the hidden dim), and each rank's routed
        output is a partial sum over its hidden slice that `combine` hands to `reduce`."""
        for name in ("gate", "up", "down"):
            p = getattr(self, name)
            if p is not None:
                setattr(self, name, shard(name, p))
        self.reduce = reduce

    @torch.no_grad()
    def init_weights(self, std: float = 0.02, generator: torch.Generator | None = None) -> None:
        for p in (self.gate, self.up, self.down):
            if p is not None:
                p.normal_(0.0, std, generator=generator)

    def expert(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Expert i on its tokens x (n, dim) (under tensor parallelism: this rank's hidden
        slice of it, a partial sum of the output)."""
        up, gate, down = (_local(p) for p in (self.up, self.gate, self.down))
        h = F.linear(x, up[i])
        h = self.act(F.linear(x, gate[i])) * h if gate is not None else self.act(h)
        return F.linear(h, down[i])

    def combine(self, y: torch.Tensor) -> torch.Tensor:
        """The routed output of every token: the ranks' partial sums added (tensor parallel)."""
        return y if self.reduce is None else self.reduce(y)


def _local(p: torch.Tensor | None) -> torch.Tensor | None:
    """A parameter's local shard (a DTensor's under tensor parallelism), the tensor itself otherwise."""
    return p.to_local() if p is not None and hasattr(p, "to_local") else p


@dataclass
class Routing:
    """What the MoE layers of one forward decided, in layer order."""

    logits: list[torch.Tensor] = field(default_factory=list)  # (tokens, E) per layer, activations' dtype
    chosen: list[torch.Tensor] = field(default_factory=list)  # (tokens, k) expert indices per layer
    configs: list[MoEConfig] = field(default_factory=list)

    def aux_loss(self, attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(raw load-balancing loss, the term loss() adds); None without MoE layers. Layers with
        the same (n_experts, top_k, coefficient) are pooled into one loss, as transformers pools
        all of Mixtral's layers; different groups' losses are summed."""
        if not self.logits:
            return None
        groups: dict[tuple[int, int, float], list[torch.Tensor]] = {}
        for logits, cfg in zip(self.logits, self.configs):
            groups.setdefault((cfg.n_experts, cfg.top_k, cfg.aux_loss_coef), []).append(logits)
        raw, weighted = [], []
        for (e, k, coef), logits in groups.items():
            loss = load_balancing_loss(logits, e, k, attention_mask)
            raw.append(loss)
            weighted.append(coef * loss)
        return torch.stack(raw).sum(), torch.stack(weighted).sum()


def route(logits: torch.Tensor, top_k: int, normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(float32 routing weights, expert indices), each (tokens, top_k)."""
    probs = torch.softmax(logits.float(), dim=-1)
    weights, chosen = torch.topk(probs, top_k, dim=-1)
    if normalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights, chosen


def load_balancing_loss(router_logits: Sequence[torch.Tensor], n_experts: int, top_k: int,
                        attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The Switch Transformer loss E * sum_i f_i * P_i over every layer's tokens together:
    f_i is the number of top-k slots routed to expert i per token (so sum_i f_i = top_k), P_i
    the mean router probability of expert i. Padding (attention_mask == 0) is left out of both
    means. Numerically what transformers' Mixtral computes (softmax in the logits' dtype)."""
    logits = torch.cat([t.reshape(-1, n_experts) for t in router_logits])
    probs = torch.softmax(logits, dim=-1)
    chosen = torch.topk(probs, top_k, dim=-1).indices
    slots = torch.zeros(logits.shape[0], n_experts, dtype=torch.float32, device=logits.device)
    slots.scatter_add_(1, chosen, torch.ones(chosen.shape, dtype=torch.float32, device=logits.device))
    probs = probs.float()
    if attention_mask is None:
        f, p = slots.mean(0), probs.mean(0)
    else:
        w = attention_mask.reshape(-1).to(device=logits.device, dtype=torch.float32).repeat(len(router_logits))
        total = w.sum()
        f, p = (slots * w[:, None]).sum(0) / total, (probs * w[:, None]).sum(0) / total
    return n_experts * torch.sum(f * p)


class MoE(nn.Module):
    """router: Linear(dim -> n_experts); experts: stacked weights; sparse top-k dispatch; shared:
    a dense FFN on every token (None without), shared_gate: Linear(dim -> 1) (None: ungated)."""

    def __init__(self, dim: int, cfg: MoEConfig):
        super().__init__()
        self.cfg = cfg
        self.router = Linear(dim, cfg.n_experts, bias=False)
        self.experts = Experts(dim, cfg)
        self.shared = cfg.shared(dim) if cfg.shared is not None else None
        self.shared_gate = Linear(dim, 1, bias=False) if cfg.shared_gate else None
        self.recording: Routing | None = None  # set by record_routing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        logits = self.router(x)
        weights, chosen = route(logits, self.cfg.top_k, self.cfg.normalize_top_k)
        if self.recording is not None:
            self.recording.logits.append(logits)
            self.recording.chosen.append(chosen)
            self.recording.configs.append(self.cfg)
        if not self.cfg.float32_weights:
            weights = weights.to(logits.dtype)
        out = self.dispatch(x, weights, chosen)
        if self.shared is not None:
            shared = self.shared(x)
            if self.shared_gate is not None:
                shared = torch.sigmoid(self.shared_gate(x)) * shared
            out = out + shared  # routed + shared, transformers' order
        return out.reshape(shape)

    def dispatch(self, x: torch.Tensor, weights: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """sum_j weights[t, j] * expert_{chosen[t, j]}(x[t]) for every token t, each expert run
        once on the tokens routed to it.

        The numerics of transformers 5's default experts implementation (`grouped_mm`): each
        output is weighted in the routing weights' dtype, put back in (token, j) order and the
        k terms of a token summed with one reduction (float32 accumulation, one rounding). Its
        `eager` loop instead adds expert by expert in the activations' dtype, which differs in
        the last bit of bfloat16 outputs when top_k > 2."""
        n, k = x.shape[0], chosen.shape[-1]
        if n == 0:
            return torch.zeros_like(x)
        flat = chosen.reshape(-1)  # slot s belongs to token s // k
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=self.cfg.n_experts).tolist()
        grouped = x.index_select(0, order // k)
        outs = [self.experts.expert(i, part) for i, part in enumerate(grouped.split(counts)) if counts[i]]
        y = torch.cat(outs) * weights.reshape(-1)[order, None]
        back = torch.empty_like(order)
        back[order] = torch.arange(order.numel(), device=order.device)
        return self.experts.combine(y[back].view(n, k, -1).sum(1)).to(x.dtype)


def moe_layers(model: nn.Module) -> list[MoE]:
    return [m for m in model.modules() if isinstance(m, MoE)]


@contextmanager
def record_routing(model: nn.Module) -> Iterator[Routing]:
    """Collect the router logits and choices of every MoE layer during the forwards inside."""
    layers = moe_layers(model)
    rec = Routing()
    for m in layers:
        m.recording = rec
    try:
        yield rec
    finally:
        for m in layers:
            m.recording = None
