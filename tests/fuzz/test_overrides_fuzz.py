"""Dotted overrides under fuzzing (`zoo.spec(name, ["arch.n_layers=2"])`, `zoo show NAME
arch.dim=...`): known-bad values and malformed overrides are refused with a ZooError, valid ones
accepted, arbitrary override strings are refused or applied, never a traceback or a hang."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .builders import TINY, compile_catalog, one_line, override_items
from .cli import isolated_cli
from .isolation import assert_accepted, assert_handled, assert_refused, isolated
from .spec_cases import GOOD_VALUES, MALFORMED_OVERRIDES, alias_bomb, deep_flow
from .strategies import bad_field_value, fuzz

NAME = "llama-2-7b"


def build_meta(name: str, overrides: list[str]) -> str:
    import zoo

    m = zoo.build(name, overrides, init="meta")
    return f"{type(m).__name__} {sum(p.numel() for p in m.parameters())}"


@fuzz(30)
@given(bad_field_value())
def test_a_bad_override_is_refused(pair: tuple[str, str]) -> None:
    items = override_items(*pair)
    assert_refused(isolated(compile_catalog, NAME, TINY + items), f"override {items!r}")


@pytest.mark.parametrize("item", MALFORMED_OVERRIDES, ids=lambda s: repr(s)[:40])
def test_a_malformed_or_hostile_override_is_refused(item: str) -> None:
    assert_refused(isolated(compile_catalog, NAME, TINY + [item]), f"override {item[:200]!r}")


@pytest.mark.parametrize("field,value", GOOD_VALUES, ids=lambda x: str(x)[:40])
def test_a_valid_override_is_accepted(field: str, value: str) -> None:
    if field.startswith("tokenizer.") and value not in ("null",) and int(value) >= 128:
        pytest.skip("outside the tiny vocabulary")
    item = f"{field}={one_line(value)}"
    assert_accepted(isolated(compile_catalog, NAME, TINY + [item]), f"override {item!r}")


@fuzz(30)
@given(st.text(max_size=40), st.text(max_size=60))
def test_arbitrary_overrides_are_refused_or_applied(key: str, value: str) -> None:
    item = f"{key}={value}"
    assert_handled(isolated(compile_catalog, NAME, TINY + [item]), f"override {item!r}")


@fuzz(10)
@given(bad_field_value())
def test_a_bad_override_is_refused_by_build_on_the_meta_device(pair: tuple[str, str]) -> None:
    item = f"{pair[0]}={one_line(pair[1])}"
    assert_refused(isolated(build_meta, NAME, TINY + [item]), f"build(init='meta') with override {item!r}")


@pytest.mark.parametrize("item", ["arch.n_layers=true", "arch.norm.eps=.inf", "arch.dim=1000000000000",
                                  "tokenizer.bos_id=-5", "arch..dim=4", "arch.dim=" + deep_flow(3000),
                                  "description=" + alias_bomb(9, 9, flow=True)], ids=lambda s: s[:30])
def test_zoo_show_refuses_a_bad_override_with_exit_2(item: str) -> None:
    assert_refused(isolated_cli(["show", NAME, *TINY, item]), f"zoo show {NAME} {item[:100]}")


def test_zoo_show_with_100000_layers_is_bounded() -> None:
    # the case: either an answer or a refusal, in seconds
    assert_handled(isolated_cli(["show", NAME, "arch.n_layers=100000"]), "zoo show llama-2-7b arch.n_layers=100000")
