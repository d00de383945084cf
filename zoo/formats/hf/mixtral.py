"""transformers' Mixtral config.json, both ways: a Llama config (llama.py) plus the MoE keys.

MixtralForCausalLM is LlamaForCausalLM with every FFN a mixture of SwiGLU experts: a bias-free
router, top-k with the kept probabilities renormalized, one expert shape on every layer.
"""

from __future__ import annotations

from typing import Any

from ...compiler.schema import DenseFFN, ModelSpec, MoE, Router

MOE_KEYS = ("num_local_experts", "num_experts_per_tok", "router_aux_loss_coef", "router_jitter_noise",
            "output_router_logits", "sliding_window")
_LLAMA_ONLY = ("mlp_bias", "pretraining_tp", "attention_bias")


def is_moe(ffn: Any) -> bool:
    return isinstance(ffn, MoE)


def mixtral_unsupported(spec: ModelSpec) -> str | None:
    """Why MixtralForCausalLM cannot run this MoE spec (beyond what Llama already refuses)."""
    blk = spec.arch.block(0)
    att, ffn = blk.attention, blk.ffn
    if ffn.expert.kind != "swiglu":
        return f"{ffn.expert.kind} experts (Mixtral's are SwiGLU)"
    if not ffn.router.normalize_top_k:
        return "routing weights that are not renormalized over the top k"
    if att.qkv_bias or att.o_bias:
        return "attention biases"
    return None


def to_mixtral_config(llama: dict[str, Any], spec: ModelSpec) -> dict[str, Any]:
    """The Llama config.json of `spec` turned into Mixtral's."""
    ffn = spec.arch.block(0).ffn
    out = {k: v for k, v in llama.items() if k not in _LLAMA_ONLY}
    out.update({"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "intermediate_size": ffn.hidden_dim,
                "num_local_experts": ffn.n_experts, "num_experts_per_tok": ffn.top_k,
                "router_aux_loss_coef": ffn.router.aux_loss_coef, "router_jitter_noise": 0.0,
                "output_router_logits": False, "sliding_window": None})
    return out


def moe_from_config(cfg: dict[str, Any], expert: DenseFFN) -> MoE:
    """The FFN of a Mixtral config.json, its experts of `expert`'s kind (SwiGLU for silu)."""
    return MoE(n_experts=cfg["num_local_experts"], top_k=cfg.get("num_experts_per_tok", 2),
               expert=type(expert).model_validate({**expert.model_dump(), "bias": False}),
               router=Router(aux_loss_coef=cfg.get("router_aux_loss_coef", 0.001)))
