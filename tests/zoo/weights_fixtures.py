"""Checkpoints in every real format, written by the tests themselves from tiny models.

The Meta writer is deliberately independent of zoo's key maps: names, the q/k permutation
(REFERENCE.md: `view(n, 2, d_head//2, dim).transpose(1, 2)` for HF -> Meta) and the model-parallel
split (wq/wk/wv/w1/w3/output on dim 0, wo/w2 on dim 1, tok_embeddings on dim 1) are written out
here by hand, so the format files are tested against the reference facts, not against themselves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

import zoo

TINY = ["arch.dim=64", "arch.n_layers=2", "arch.vocab_size=128", "arch.ffn.hidden_dim=160"]
GQA = ["arch.attention.n_heads=8", "arch.attention.n_kv_heads=2"]
ATOL = RTOL = 1e-4


def tiny(name: str = "llama-2-7b", *extra: str, seed: int = 1) -> Any:
    """A tiny random zoo model with weights large enough to make logits comparisons meaningful."""
    m = zoo.build(name, TINY + list(extra), backend="eager", seed=seed).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:
                p.mul_(5.0)
    return m


def hf_llama(n_heads: int = 4, n_kv_heads: int = 4, tie: bool = False, theta: float = 10000.0, seed: int = 0) -> Any:
    """A tiny random transformers LlamaForCausalLM (float32, eager attention)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                      num_attention_heads=n_heads, num_key_value_heads=n_kv_heads, rms_norm_eps=1e-5,
                      max_position_embeddings=256, tie_word_embeddings=tie,
                      rope_parameters={"rope_type": "default", "rope_theta": theta}, attn_implementation="eager")
    ref = LlamaForCausalLM(cfg).float().eval()
    with torch.no_grad():
        for p in ref.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.1)
    return ref


def _unpermute(w: torch.Tensor, n: int) -> torch.Tensor:
    """HF half-split rows -> Meta interleaved rows (REFERENCE.md's inverse permutation)."""
    d_out, dim = w.shape
    return w.view(n, 2, d_out // n // 2, dim).transpose(1, 2).reshape(d_out, dim)


def meta_state_from_hf(ref: Any) -> dict[str, torch.Tensor]:
    """A transformers Llama's weights under Meta's names, q/k in Meta's interleaved RoPE layout."""
    c = ref.config
    sd = {k: v.detach().clone() for k, v in ref.state_dict().items()}
    out = {"tok_embeddings.weight": sd["model.embed_tokens.weight"], "norm.weight": sd["model.norm.weight"],
           "output.weight": sd["lm_head.weight"]}
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}."
        out.update({
            f"layers.{i}.attention.wq.weight": _unpermute(sd[p + "self_attn.q_proj.weight"], c.num_attention_heads),
            f"layers.{i}.attention.wk.weight": _unpermute(sd[p + "self_attn.k_proj.weight"], c.num_key_value_heads),
            f"layers.{i}.attention.wv.weight": sd[p + "self_attn.v_proj.weight"],
            f"layers.{i}.attention.wo.weight": sd[p + "self_attn.o_proj.weight"],
            f"layers.{i}.feed_forward.w1.weight": sd[p + "mlp.gate_proj.weight"],
            f"layers.{i}.feed_forward.w2.weight": sd[p + "mlp.down_proj.weight"],
            f"layers.{i}.feed_forward.w3.weight": sd[p + "mlp.up_proj.weight"],
            f"layers.{i}.attention_norm.weight": sd[p + "input_layernorm.weight"],
            f"layers.{i}.ffn_norm.weight": sd[p + "post_attention_layernorm.weight"],
        })
    return out


SHARD_DIM = {"wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "output": 0, "wo": 1, "w2": 1, "tok_embeddings": 1}


def write_meta_folder(ref: Any, folder: Path, shards: int = 1) -> Path:
    """consolidated.NN.pth (split the Meta way) + params.json, from a transformers Llama."""
    c = ref.config
    state = meta_state_from_hf(ref)
    state["rope.freqs"] = torch.ones(c.hidden_size // c.num_attention_heads // 2)  # old Meta checkpoints carry it
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(shards):
        part = {}
        for name, t in state.items():
            kind = name.split(".")[-2] if name.count(".") >= 2 else name.split(".")[0]
            d = SHARD_DIM.get(kind)
            part[name] = t.chunk(shards, d)[k].clone() if d is not None and shards > 1 else t.clone()
        torch.save(part, folder / f"consolidated.{k:02d}.pth")
    h = int(2 * 4 * c.hidden_size / 3)  # 170; ffn_dim_multiplier 0.9 -> 153, multiple_of 32 -> 160
    params = {"dim": c.hidden_size, "n_layers": c.num_hidden_layers, "n_heads": c.num_attention_heads,
              "n_kv_heads": c.num_key_value_heads, "vocab_size": -1, "multiple_of": 32, "ffn_dim_multiplier": 0.9,
              "norm_eps": c.rms_norm_eps, "rope_theta": c.rope_parameters["rope_theta"]}
    assert 32 * -(-int(0.9 * h) // 32) == c.intermediate_size
    (folder / "params.json").write_text(json.dumps(params))
    return folder


def train_tokenizer(folder: Path, vocab_size: int = 120) -> Path:
    """A tiny SentencePiece BPE model (tokenizer.model), trained in well under a second."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(["def add(a, b):\n    return a + b", "the quick brown fox jumps over the lazy dog",
                                 "hello world, hello zoo"] * 30))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(folder / "tokenizer"), model_type="bpe",
                                   vocab_size=vocab_size, byte_fallback=False, minloglevel=2, num_threads=1)
    return folder / "tokenizer.model"


def logits(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(tokens)
    return out if isinstance(out, torch.Tensor) else out.logits
