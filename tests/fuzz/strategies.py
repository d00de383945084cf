"""Hypothesis strategies for the fuzz tests: values known to be invalid (each must be refused),
valid ones (each must be accepted), and arbitrary ones (accepted or refused, never a traceback).

Generated values come from the named tables (*_cases.py) or from the seeded generators that
bench/hostile.py uses too (generators.py), drawn through `st.randoms()` so that hypothesis
controls, reproduces and shrinks them.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from .builders import base_spec, set_path
from .generation_cases import BAD_GENERATION
from .generators import random_bad_generation, random_good_generation, random_valid_spec, random_value
from .spec_cases import BAD_PAIRS, FLOAT_FIELDS, INT_FIELDS, SIZE_FIELDS, TOKEN_FIELDS


def fuzz(n: int) -> settings:
    """Hypothesis settings for one fuzz test: `n` examples (times ZOO_FUZZ_SCALE), reproducible
    (derandomized, no example database), no deadline (each example forks). Shrinking is off by
    default to keep the suite fast while the product is failing (ZOO_FUZZ_SHRINK=1 turns it on:
    the failing example is reported as generated)."""
    scale = float(os.environ.get("ZOO_FUZZ_SCALE", "1"))
    phases = [Phase.explicit, Phase.reuse, Phase.generate]
    if os.environ.get("ZOO_FUZZ_SHRINK") == "1":
        phases.append(Phase.shrink)
    return settings(max_examples=max(1, int(n * scale)), deadline=None, derandomize=True, database=None,
                    phases=phases, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                          HealthCheck.data_too_large, HealthCheck.filter_too_much])


def _randoms() -> st.SearchStrategy[Any]:
    return st.randoms(use_true_random=False)


def bad_field_value() -> st.SearchStrategy[tuple[str, str]]:
    """A (dotted field, YAML value) pair no spec may hold, from the tables or generated:
    a non-positive or huge int, a non-finite or non-positive float, an out-of-range token id."""
    generated = st.one_of(
        st.tuples(st.sampled_from(INT_FIELDS), st.integers(max_value=0).map(str)),
        st.tuples(st.sampled_from(SIZE_FIELDS), st.integers(min_value=10**12, max_value=10**30).map(str)),
        st.tuples(st.sampled_from(FLOAT_FIELDS),
                  st.one_of(st.floats(max_value=0.0, allow_nan=False), st.sampled_from([".nan", ".inf", "-.inf"]))
                  .map(lambda x: x if isinstance(x, str) else repr(float(x)).replace("inf", ".inf"))),
        st.tuples(st.sampled_from(TOKEN_FIELDS),
                  st.one_of(st.integers(max_value=-2), st.integers(min_value=128, max_value=2**70)).map(str)),
    )
    return st.one_of(st.sampled_from(BAD_PAIRS), generated)


def valid_spec() -> st.SearchStrategy[dict[str, Any]]:
    """A small spec that is valid by construction (generators.random_valid_spec)."""
    return _randoms().map(random_valid_spec)


def yaml_values() -> st.SearchStrategy[Any]:
    """Arbitrary YAML/JSON-able data, nested a little (generators.random_value)."""
    return _randoms().map(random_value)


def corrupt_spec_dict() -> st.SearchStrategy[dict[str, Any]]:
    """BASE_SPEC with one arbitrary key replaced by arbitrary data (likely bad, sometimes not)."""
    paths = ["name", "arch", "arch.dim", "arch.attention", "arch.attention.n_heads", "arch.attention.rope",
             "arch.ffn", "arch.ffn.hidden_dim", "arch.norm", "arch.norm.eps", "tokenizer", "tokenizer.bos_id",
             "arch.layers", "arch.heads", "arch.vocab_size"]
    return st.tuples(st.sampled_from(paths), yaml_values()).map(lambda pv: set_path(base_spec(), pv[0], pv[1]))


def bad_generation_kwargs() -> st.SearchStrategy[dict[str, Any]]:
    """Sampling arguments with one out of range: from the table, or generated
    (generators.random_bad_generation)."""
    return st.one_of(st.sampled_from(BAD_GENERATION).map(dict), _randoms().map(random_bad_generation))


def good_generation_kwargs() -> st.SearchStrategy[dict[str, Any]]:
    """Valid sampling arguments (generators.random_good_generation)."""
    return _randoms().map(random_good_generation)
