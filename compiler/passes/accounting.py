"""Parameters, FLOPs per token and memory, computed from the IR's symbolic shapes."""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import Node

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float8": 1, "int8": 1}


@dataclass(frozen=True)
class Accounting:
    params: int
    params_by_part: dict[str, int]
    flops_per_token: int  # forward, at the given context length
    context: int
    kv_bytes_per_token: int  # per dtype byte, i.e. multiply by dtype size
    weight_bytes: dict[str, int]
    # parameters one token runs through: all but the experts its router leaves out (= params
    # for dense models; Mixtral-8x7B: 12.9B of 46.7B)
    active_params: int = 0

    def kv_cache_bytes(self, tokens: int, dtype: str = "bfloat16") -> int:
        return self.kv_bytes_per_token * DTYPE_BYTES[dtype] * tokens


def account(ir: Node, context: int | None = None) -> Accounting:
    if ir.kind == "vision_language":
        from .accounting_vision import account_vision_language

        return account_vision_language(ir, context)
    arch = ir.attrs["spec"]
    ctx = context or arch.max_seq_len
    by_part: dict[str, int] = {"embedding": 0, "attention": 0, "ffn": 0, "norm": 0, "output": 0}
    matmul = 0
    attn_flops = 0
    kv_elems = 0
    inactive = 0
    for node in ir.walk():
        n = sum(p.numel for p in node.params)
        if node.kind == "embedding":
            by_part["embedding"] += n
        elif node.kind == "norm":
            by_part["norm"] += n
        elif node.kind == "linear":
            part = "output" if node.path == "output" else ("attention" if ".attn." in node.path else "ffn")
            by_part[part] += n
            matmul += node.params[0].numel
        elif node.kind == "experts":
            e, k = node.attrs["n_experts"], node.attrs["top_k"]
            by_part["ffn"] += n
            matmul += n // e * k  # each token runs top_k of the n_experts experts
            inactive += n // e * (e - k)
        elif node.kind == "attention":
            a = node.attrs["spec"]
            window = min(ctx, a.sliding_window or ctx)
            # scores and weighted sum: 2 matmuls of (heads*head_dim) x keys, averaged over the context
            attn_flops += 2 * 2 * a.n_heads * a.head_dim * (window if a.sliding_window else (ctx + 1) // 2)
            kv_elems += 2 * a.n_kv_heads * a.head_dim
    if arch.tie_embeddings:
        matmul += arch.vocab_size * arch.dim
    total = sum(by_part.values())
    weight_bytes = {k: total * v for k, v in DTYPE_BYTES.items() if k in ("float32", "bfloat16", "int8")}
    return Accounting(total, by_part, 2 * matmul + attn_flops, ctx, kv_elems, weight_bytes, total - inactive)
