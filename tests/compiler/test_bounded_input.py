"""Spec files and overrides are bounded: size, depth, alias expansion, count; odd bytes and
paths out of the spec's folder are refused with a SpecError, quickly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import zoo
from zoo.compiler.errors import SpecError
from zoo.compiler.frontend import spec_from_file, spec_from_text

BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


def _refused(fn, *args, match: str, seconds: float = 2.0) -> None:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    with pytest.raises(SpecError, match=match):
        fn(*args)
    assert time.perf_counter() - t < seconds


def test_an_alias_bomb_in_a_file(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text(BOMB)
    _refused(spec_from_file, tmp_path / "bomb.yaml", match="expands to more than 10,000 values")


def test_an_alias_bomb_as_an_override() -> None:
    bomb = "{" + BOMB.replace("\n", ", ").rstrip(", ").replace(": &", ": &") + "}"
    _refused(zoo.spec, "llama-2-7b", [f"description={bomb}"], match="expands to more than 10,000 values")


def test_deep_nesting_in_files_and_overrides(tmp_path: Path) -> None:
    deep = "x: " + "{a: " * 400 + "1" + "}" * 400
    (tmp_path / "deep.yaml").write_text(deep)
    _refused(spec_from_file, tmp_path / "deep.yaml", match="nested more than 32 levels deep")
    _refused(zoo.spec, "llama-2-7b", ["arch." + ".".join(["a"] * 400) + "=1"], match="nested more than 32 levels")
    _refused(zoo.spec, "llama-2-7b", ["arch.x=" + "[" * 100 + "]" * 100], match="nested more than 32 levels")


def test_a_huge_file_is_refused_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("name: big\ndescription: " + "x" * (10 << 20) + "\n")
    _refused(spec_from_file, big, match="a spec file is at most 1,048,576")


def test_nul_bytes_and_control_characters(tmp_path: Path) -> None:
    _refused(spec_from_text, "name: x\x00\narch: {}\n", match="not valid YAML")
    (tmp_path / "nul.yaml").write_bytes(b"extends: llama/llama-2-7b\nname: \x00\x01\n")
    _refused(spec_from_file, tmp_path / "nul.yaml", match="not valid YAML")


@pytest.mark.parametrize("ref", ["/proc/self/environ", "/etc/passwd.yaml", "../outside.yaml", "sub/../../x.yaml"])
def test_extends_stays_in_the_spec_folder(tmp_path: Path, ref: str) -> None:
    (tmp_path / "outside.yaml").write_text("name: outside\n")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "child.yaml").write_text(f"extends: {ref}\n")
    _refused(spec_from_file, tmp_path / "in" / "child.yaml", match="extends: .*(absolute path|climbs out)")


def test_extends_through_a_symlink_out(tmp_path: Path) -> None:
    (tmp_path / "outside.yaml").write_text("name: outside\n")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "base.yaml").symlink_to(tmp_path / "outside.yaml")
    (tmp_path / "in" / "child.yaml").write_text("extends: ./base.yaml\n")
    _refused(spec_from_file, tmp_path / "in" / "child.yaml", match=r"outside .* \(a symlink\?\)")


def test_a_file_beside_the_spec_still_works(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("extends: llama/llama-2-7b\narch: {n_layers: 3}\n")
    (tmp_path / "child.yaml").write_text("extends: ./base.yaml\n")
    from zoo.catalog import specs_root
    from zoo.compiler.frontend import SpecResolver

    assert spec_from_file(tmp_path / "child.yaml", resolver=SpecResolver([tmp_path, specs_root()])).arch.n_layers == 3


def test_too_many_overrides() -> None:
    _refused(zoo.spec, "llama-2-7b", [f"description=x{i}" for i in range(1001)], match="at most 1,000")


def test_a_huge_layer_count_is_refused_before_any_work() -> None:
    _refused(zoo.compile, "llama-2-7b", ["arch.n_layers=100000"], match="less than or equal to 1024", seconds=1.0)


def test_a_model_too_large_for_torch_is_refused_before_building() -> None:
    _refused(zoo.compile, "mixtral-8x7b", ["arch.dim=1048576", "arch.attention.n_heads=256", "arch.ffn.n_experts=4096",
                                           "arch.ffn.expert.hidden_dim=1048576"], match="elements in one tensor")


def test_error_messages_cap_what_they_quote() -> None:
    with pytest.raises(SpecError) as info:
        zoo.spec("llama-2-7b", ["arch.dim=" + "9" * 100_000])
    assert len(str(info.value)) < 2000
