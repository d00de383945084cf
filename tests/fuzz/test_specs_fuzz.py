"""Spec files under fuzzing: every known-bad value is refused with a ZooError (SpecError), every
valid spec is accepted, and arbitrary text, bytes and data are refused or read, never a
traceback, a hang or a blow-up. Each case runs in a forked child (isolation.isolated)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from .builders import EXTENDS_SPEC, base_spec, build_meta_text, compile_file, compile_text, dump_yaml, spec_with
from .cli import isolated_cli
from .isolation import assert_accepted, assert_handled, assert_refused, isolated
from .spec_cases import BAD_PAIRS, GOOD_VALUES
from .strategies import bad_field_value, corrupt_spec_dict, fuzz, valid_spec, yaml_values

EXTENDS_BASE = yaml.safe_load(EXTENDS_SPEC)


@fuzz(40)
@given(bad_field_value(), st.sampled_from(["inline", "extends"]))
def test_a_bad_value_in_a_spec_is_refused(pair: tuple[str, str], base: str) -> None:
    field, value = pair
    text = spec_with(field, value, base_spec() if base == "inline" else EXTENDS_BASE)
    assert_refused(isolated(compile_text, text), f"spec with {field}: {value} ({base})")


@pytest.mark.parametrize("field,value", BAD_PAIRS[::15], ids=lambda x: str(x)[:40])
def test_a_bad_value_is_refused_by_build_on_the_meta_device(field: str, value: str) -> None:
    assert_refused(isolated(build_meta_text, spec_with(field, value)), f"build(init='meta') with {field}: {value}")


@pytest.mark.parametrize("field,value", GOOD_VALUES, ids=lambda x: str(x)[:40])
def test_a_valid_value_is_accepted(field: str, value: str) -> None:
    assert_accepted(isolated(compile_text, spec_with(field, value)), f"spec with {field}: {value}")


@fuzz(15)
@given(valid_spec())
def test_valid_specs_compile_and_build(data: dict) -> None:
    text = dump_yaml(data)
    assert_accepted(isolated(compile_text, text), f"valid spec\n{text}")
    assert_accepted(isolated(build_meta_text, text), f"build(init='meta') of a valid spec\n{text}")


@fuzz(25)
@given(st.one_of(st.text(max_size=300), yaml_values().map(dump_yaml)))
def test_arbitrary_text_is_refused(text: str) -> None:
    # no name or arch can come out of these: nothing here is a loadable spec
    assert_refused(isolated(compile_text, text), f"spec text {text[:200]!r}")


@fuzz(20)
@given(corrupt_spec_dict())
def test_arbitrary_data_in_a_valid_spec_is_refused_or_read(data: dict) -> None:
    assert_handled(isolated(compile_text, dump_yaml(data)), f"spec\n{dump_yaml(data)[:400]}")


@fuzz(20)
@given(st.data())
def test_text_edits_of_a_valid_spec_are_refused_or_read(data: st.DataObject) -> None:
    text = dump_yaml(base_spec())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        edit = data.draw(st.sampled_from(["delete", "insert", "dup-line"]))
        if edit == "delete":
            text = text[:i] + text[i + 1:]
        elif edit == "insert":
            noise = data.draw(st.sampled_from(["\x00", "\t", ":", "[", "{", "&a ", "*a", "!!binary ", "'", "\ufeff",
                                               "\x85", "\ud800", "- ", "\n  ", "${", "%"]))
            text = text[:i] + noise + text[i:]
        else:
            lines = text.splitlines(keepends=True)
            j = data.draw(st.integers(0, len(lines) - 1))
            text = "".join(lines[:j + 1] + [lines[j]] + lines[j + 1:])
    assert_handled(isolated(compile_text, text), f"edited spec {text!r}")


@fuzz(15)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_as_a_spec_file_are_refused(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    path = tmp_path_factory.mktemp("bytes") / "fuzzed.yaml"
    path.write_bytes(raw)
    assert_refused(isolated(compile_file, path), f"spec file bytes {raw[:100]!r}")


@pytest.mark.parametrize("field,value", BAD_PAIRS[3::25], ids=lambda x: str(x)[:40])
def test_the_cli_refuses_a_bad_spec_file_with_exit_2(tmp_path: Path, field: str, value: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(spec_with(field, value))
    assert_refused(isolated_cli(["compile", str(path)]), f"zoo compile with {field}: {value}")
    assert_refused(isolated_cli(["show", str(path)]), f"zoo show with {field}: {value}")


def test_the_cli_accepts_a_valid_spec_file(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(dump_yaml(base_spec()))
    assert_accepted(isolated_cli(["compile", str(path)]), "zoo compile of a valid file")
    assert_accepted(isolated_cli(["show", str(path)]), "zoo show of a valid file")
