"""Sparse mixture of experts (Mixtral; Branch-Train-MiX): out = sum over the k experts a router
picks of g_i(x) * expert_i(x).

Routing follows transformers' Mixtral exactly: router logits W x in the activations' dtype, a
float32 softmax over all experts, the top k kept and renormalized to sum to 1 (the same as a
softmax over the k kept logits), routing weights kept in float32. Dispatch is sparse: the
(token, expert) pairs are sorted by expert, each expert runs once on its contiguous slice of
tokens, and the weighted results are added back per token with index_add (no dense E x compute).

The Switch load-balancing loss (E * sum_i f_i * P_i) needs every MoE layer's router logits of
one forward: `record_routing(model)` collects them, and `CausalLM.loss` adds
aux_loss_coef * loss to the language-model loss.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .ffn import ACTIVATIONS
from .layers import Linear


@dataclass(frozen=True)
class MoEConfig:
    """A router and n_experts FFNs of one shape (bias-free; gated or a plain MLP), top_k per token."""

    n_experts: int
    top_k: int
    hidden_dim: int  # one expert's
    activation: str = "silu"
    gated: bool = True
    aux_loss_coef: float = 0.01
    normalize_top_k: bool = True


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

    @torch.no_grad()
    def init_weights(self, std: float = 0.02, generator: torch.Generator | None = None) -> None:
        for p in (self.gate, self.up, self.down):
            if p is not None:
                p.normal_(0.0, std, generator=generator)

    def expert(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Expert i on its tokens x (n, dim)."""
        h = F.linear(x, self.up[i])
        h = self.act(F.linear(x, self.gate[i])) * h if self.gate is not None else self.act(h)
        return F.linear(h, self.down[i])


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
    """router: Linear(dim -> n_experts); experts: stacked weights; sparse top-k dispatch."""

    def __init__(self, dim: int, cfg: MoEConfig):
        super().__init__()
        self.cfg = cfg
        self.router = Linear(dim, cfg.n_experts, bias=False)
        self.experts = Experts(dim, cfg)
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
        return self.dispatch(x, weights, chosen).reshape(shape)

    def dispatch(self, x: torch.Tensor, weights: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """sum_j weights[t, j] * expert_{chosen[t, j]}(x[t]) for every token t, each expert run
        once on the tokens routed to it."""
        k = chosen.shape[-1]
        flat = chosen.reshape(-1)  # slot s belongs to token s // k
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=self.cfg.n_experts).tolist()
        token = order // k
        grouped = x.index_select(0, token)
        outs = [self.experts.expert(i, part) for i, part in enumerate(grouped.split(counts)) if counts[i]]
        out = torch.zeros_like(x)
        if not outs:
            return out
        # weighting in float32 (the routing weights' dtype), then back, as transformers does
        y = (torch.cat(outs) * weights.reshape(-1)[order, None]).to(x.dtype)
        return out.index_add_(0, token, y)


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
