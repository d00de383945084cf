"""Seeded generators of arbitrary and of valid-by-construction values, written once for both
users: bench/hostile.py calls them with a `random.Random(seed)`, and strategies.py maps them over
hypothesis's `st.randoms()` (whose draws hypothesis controls, reproduces and shrinks)."""

from __future__ import annotations

import random
from typing import Any

from .builders import base_spec


def random_text(rng: random.Random, n: int) -> str:
    """Up to `n` characters, YAML's syntax and control characters over-represented."""
    alphabet = ("abcdefghijklmnopqrstuvwxyz0123456789 _-.:{}[],&*!|>'\"#%@`\n\t\\$?~=+^()"
                "\x00\x01\x1b\x7f\x85\u00e9\u2028\ufeff\U0001f600")
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, n)))


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """Arbitrary YAML/JSON-able data, nested a little: None, bools, huge ints, non-finite floats,
    hostile text, lists and mappings of them."""
    r = rng.random()
    if depth < 3 and r < 0.2:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 3 and r < 0.4:
        return {random_text(rng, 6): random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return rng.choice([None, True, False, rng.randint(-2**70, 2**70), rng.randint(-3, 300), rng.uniform(-1e9, 1e9),
                       float("nan"), float("inf"), -0.0, random_text(rng, 12)])


def random_valid_spec(rng: random.Random) -> dict[str, Any]:
    """A small spec that is valid by construction (even head_dim, kv heads dividing heads,
    token ids inside the vocabulary)."""
    n_heads = rng.choice([1, 2, 4, 8])
    head_dim = rng.choice([2, 4, 8, 16])
    dim = n_heads * head_dim * rng.choice([1, 2])
    kv = rng.choice([d for d in (1, 2, 4, 8) if d <= n_heads and n_heads % d == 0])
    vocab = rng.randint(8, 300)
    data = base_spec()
    a = data["arch"]
    a.update(dim=dim, n_layers=rng.randint(1, 3), vocab_size=vocab, max_seq_len=rng.randint(1, 4096))
    a["attention"].update(n_heads=n_heads, n_kv_heads=kv, head_dim=head_dim)
    a["attention"]["rope"]["theta"] = rng.uniform(1.0, 1e7)
    if rng.random() < 0.5:
        a["attention"]["sliding_window"] = rng.randint(1, a["max_seq_len"])
    a["ffn"] = {"kind": rng.choice(["swiglu", "geglu", "gelu-mlp"]), "hidden_dim": rng.randint(1, 200)}
    a["norm"] = {"kind": "rmsnorm", "eps": 10 ** rng.uniform(-8, -2)}
    a["tie_embeddings"] = rng.random() < 0.5
    data["tokenizer"].update({k: rng.choice([None, rng.randint(0, vocab - 1)]) for k in ("bos_id", "eos_id", "pad_id")})
    return data


def random_bad_generation(rng: random.Random) -> dict[str, Any]:
    """One sampling argument out of range (the others valid), as transformers validates them:
    temperature >= 0 and finite, top_k >= 0, 0 < top_p <= 1, 1 <= max_new_tokens <= context."""
    which = rng.choice(["max_new_tokens", "temperature", "top_k", "top_p"])
    kw: dict[str, Any] = {"temperature": 0.8, "seed": rng.randint(0, 99)}
    if which == "max_new_tokens":
        kw[which] = rng.choice([0, -1, -rng.randint(2, 10**9), rng.randint(1025, 10**6), 2**63])
    elif which == "temperature":
        kw[which] = rng.choice([-rng.uniform(1e-9, 1e9), float("nan"), float("inf"), float("-inf")])
    elif which == "top_k":
        kw[which] = -rng.randint(1, 10**9)
    else:
        kw[which] = rng.choice([0.0, -rng.uniform(0, 10), 1 + rng.uniform(1e-6, 10), float("nan"), float("inf")])
    if which != "temperature" and rng.random() < 0.3:
        kw.pop("temperature")  # greedy: the bad argument is still an error
    return kw


def random_good_generation(rng: random.Random) -> dict[str, Any]:
    kw: dict[str, Any] = {"max_new_tokens": rng.randint(1, 3), "seed": rng.randint(0, 2**31)}
    if rng.random() < 0.7:
        kw["temperature"] = rng.uniform(1e-3, 3.0)
        if rng.random() < 0.5:
            kw["top_k"] = rng.randint(0, 5000)
        if rng.random() < 0.5:
            kw["top_p"] = rng.uniform(1e-3, 1.0)
    return kw
