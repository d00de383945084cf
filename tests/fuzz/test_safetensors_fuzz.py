"""safetensors files and their index under fuzzing, in a zoo folder (zoo.yaml's manifest made to
agree, as an attacker would) and in a plain transformers folder: every known-bad header, a
truncation anywhere, a swapped dtype, a hostile index are refused with a ZooError; random
header corruption is refused or read; NaN/inf weights are warned about or refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .builders import checkpoint_folders, copy_folder, digest, load_digest, tiny_model
from .checkpoint_cases import HEADER_BAD, INDEX_BAD, NAN_CASES
from .editors import INDEX, ST, header_end, largest_tensor, mutate_safetensors, overwrite_header_bytes, truncate_weights
from .isolation import assert_accepted, assert_handled, assert_refused, isolated
from .probes import load_warnings
from .strategies import fuzz, yaml_values


@pytest.fixture(scope="module")
def model() -> Any:
    return tiny_model(seed=5)


@pytest.fixture(scope="module")
def folders(model: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = checkpoint_folders(model, tmp_path_factory.mktemp("st"), kinds=("zoo", "hf", "sharded"))
    assert (out["sharded"] / INDEX).is_file()
    return out


# every case in a zoo folder (manifest made to agree), every third in a transformers folder too
HEADER_CASES = [("zoo", c) for c in HEADER_BAD] + [("hf", c) for c in list(HEADER_BAD)[::3] if "20k" not in c]


@pytest.mark.parametrize("kind,case", HEADER_CASES, ids=lambda x: str(x))
def test_a_hostile_safetensors_header_is_refused(folders: dict[str, Path], tmp_path: Path, kind: str,
                                                 case: str) -> None:
    folder = mutate_safetensors(folders[kind], tmp_path, HEADER_BAD[case])
    if case in NAN_CASES:  # integrity: warned about, or refused
        out = isolated(load_warnings, folder)
        assert out.kind == "zoo" or (out.kind == "ok" and out.value), \
            f"{kind} folder with {case}: must warn or refuse, got {out}"
        return
    assert_refused(isolated(load_digest, folder), f"{kind} folder with {case}")


def test_the_unedited_folders_load(folders: dict[str, Path], model: Any) -> None:
    for kind, folder in folders.items():
        out = isolated(load_digest, folder)
        assert_accepted(out, f"the {kind} folder")
        assert out.value == digest(model), f"the {kind} folder loads other weights"


@fuzz(20)
@given(kind=st.sampled_from(["zoo", "hf"]), cut=st.integers(min_value=1, max_value=40000))
def test_a_truncated_file_is_refused(folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, kind: str,
                                     cut: int) -> None:
    dst = copy_folder(folders[kind], tmp_path_factory.mktemp("cut") / "case")
    truncate_weights(dst, cut)
    assert_refused(isolated(load_digest, dst), f"{kind} folder with {ST} cut by {cut} bytes")


@fuzz(25)
@given(kind=st.sampled_from(["zoo", "hf"]), data=st.data())
def test_random_header_corruption_is_refused_or_read(folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory,
                                                     kind: str, data: st.DataObject) -> None:
    dst = copy_folder(folders[kind], tmp_path_factory.mktemp("flip") / "case")
    end = header_end(dst)
    flips = [(data.draw(st.integers(0, end - 1)), data.draw(st.integers(0, 255)))
             for _ in range(data.draw(st.integers(1, 6)))]
    overwrite_header_bytes(dst, flips)
    assert_handled(isolated(load_digest, dst), f"{kind} folder with corrupted header bytes")


@fuzz(15)
@given(data=st.data())
def test_arbitrary_header_values_are_refused_or_read(folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory,
                                                     data: st.DataObject) -> None:
    value = data.draw(yaml_values())
    key = data.draw(st.sampled_from(["dtype", "shape", "data_offsets"]))

    def fn(h: dict, d: bytes) -> None:
        h[largest_tensor(h)][key] = value

    dst = mutate_safetensors(folders["hf"], tmp_path_factory.mktemp("val"), fn)
    assert_handled(isolated(load_digest, dst), f"header {key}: {value!r}")


@pytest.mark.parametrize("case", list(INDEX_BAD))
def test_a_hostile_index_is_refused(folders: dict[str, Path], tmp_path: Path, case: str) -> None:
    dst = copy_folder(folders["sharded"], tmp_path / "case")
    INDEX_BAD[case](dst)
    assert_refused(isolated(load_digest, dst), f"sharded folder with {case}")
