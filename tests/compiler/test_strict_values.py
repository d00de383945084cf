"""Values the schema used to accept although wrong: booleans for numbers, non-finite floats,
sizes past any model, an FFN of zero units, token ids outside the vocabulary. Each is refused
where it is written, with the key named."""

from __future__ import annotations

import pytest

import zoo
from zoo.compiler.errors import SpecError

CASES = {
    "arch.n_layers=true": "arch.n_layers: expected an integer, got a boolean",
    "arch.attention.n_kv_heads=true": "arch.attention.n_kv_heads: expected an integer, got a boolean",
    "arch.tie_embeddings=1": "arch.tie_embeddings: input should be a valid boolean",
    "arch.norm.eps=.inf": "arch.norm.eps: input should be a finite number",
    "arch.norm.eps=.nan": "arch.norm.eps: input should be a finite number",
    "arch.norm.eps=0.5": "arch.norm.eps: input should be less than or equal to 0.1",
    "arch.attention.rope.theta=.inf": "arch.attention.rope.theta: input should be a finite number",
    "arch.attention.rope.theta=true": "arch.attention.rope.theta: expected a number, got a boolean",
    "arch.dim=1000000000000": "arch.dim: input should be less than or equal to 1048576",
    "arch.vocab_size=100000000": "arch.vocab_size: input should be less than or equal to 16777216",
    "arch.n_layers=100000": "arch.n_layers: input should be less than or equal to 1024",
    "arch.max_seq_len=0": "arch.max_seq_len: input should be greater than 0",
    "arch.attention.sliding_window=0": "arch.attention.sliding_window: input should be greater than 0",
    "arch.attention.sliding_window=-5": "arch.attention.sliding_window: input should be greater than 0",
    "arch.ffn={kind: swiglu, multiple_of: 256, dim_multiplier: 1.0e-30}": "arch.ffn: the LLaMA rule gives 0 hidden units",
    "arch.ffn.hidden_dim=2.5": "arch.ffn.hidden_dim: expected an integer, got 2.5",
    "tokenizer.bos_id=-5": "tokenizer.bos_id: input should be greater than or equal to 0",
    "tokenizer.eos_id=32000": "tokenizer.eos_id: 32000 is not below the vocab_size (32000)",
    "tokenizer.pad_id=true": "tokenizer.pad_id: expected an integer, got a boolean",
}


@pytest.mark.parametrize("override", list(CASES))
def test_wrong_values_are_refused_where_written(override: str) -> None:
    with pytest.raises(SpecError) as info:
        zoo.spec("llama-2-7b", [override])
    assert CASES[override] in str(info.value)


def test_integral_floats_are_integers() -> None:
    s = zoo.spec("llama-2-7b", ["arch.n_layers=2.0", "arch.dim=${mul:64,2.0}"])
    assert s.arch.n_layers == 2 and isinstance(s.arch.n_layers, int) and s.arch.dim == 128


def test_infill_ids_must_be_in_the_vocabulary() -> None:
    with pytest.raises(SpecError, match=r"tokenizer.infill.prefix_id: 32007 is not below the vocab_size \(128\)"):
        zoo.spec("codellama-7b", ["arch.vocab_size=128"])
    assert zoo.spec("codellama-7b", ["arch.vocab_size=128", "tokenizer.infill=null"]).tokenizer.infill is None


def test_values_set_in_code_are_validated_too() -> None:
    from pydantic import ValidationError

    from zoo.compiler.schema import Attention

    with pytest.raises(ValidationError):
        Attention(n_heads=0)
    with pytest.raises(ValidationError):
        Attention(n_heads=True)
