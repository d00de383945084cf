"""transformers folders (config.json + safetensors, no zoo.yaml) with a hostile config.json:
every known-bad value is refused with a ZooError, valid edits still load, and arbitrary JSON
in any key is refused or read, never a traceback, a hang or a blow-up."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .builders import copy_folder, hf_folder, tiny_mixtral, tiny_model
from .checkpoint_cases import HF_BAD, HF_GOOD, HF_REQUIRED, MIXTRAL_BAD
from .editors import edit_config
from .isolation import assert_accepted, assert_handled, assert_refused, isolated
from .strategies import fuzz, yaml_values


@pytest.fixture(scope="module")
def llama_hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hf_folder(tiny_model(seed=3), tmp_path_factory.mktemp("hf") / "llama")


@pytest.fixture(scope="module")
def mixtral_hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hf_folder(tiny_mixtral(), tmp_path_factory.mktemp("hf") / "mixtral")


def load(folder: Path) -> str:
    import zoo

    m = zoo.load(str(folder))
    return f"{m.spec.name}: {m.num_parameters} params"


def edited(src: Path, root: Path, key: str, value: Any, *, delete: bool = False) -> Path:
    dst = copy_folder(src, root / "case")
    edit_config(dst, key, value, delete=delete)
    return dst


@pytest.mark.parametrize("key,value", HF_BAD[::2], ids=lambda x: repr(x)[:30])  # all of them: bench/hostile.py
def test_a_bad_llama_config_value_is_refused(llama_hf: Path, tmp_path: Path, key: str, value: Any) -> None:
    folder = edited(llama_hf, tmp_path, key, value)
    assert_refused(isolated(load, folder), f"config.json with {key}: {value!r}")


@pytest.mark.parametrize("key,value", MIXTRAL_BAD, ids=lambda x: repr(x)[:30])
def test_a_bad_mixtral_config_value_is_refused(mixtral_hf: Path, tmp_path: Path, key: str, value: Any) -> None:
    folder = edited(mixtral_hf, tmp_path, key, value)
    assert_refused(isolated(load, folder), f"Mixtral config.json with {key}: {value!r}")


@pytest.mark.parametrize("key,value", HF_GOOD, ids=lambda x: repr(x)[:30])
def test_a_valid_config_edit_still_loads(llama_hf: Path, tmp_path: Path, key: str, value: Any) -> None:
    assert_accepted(isolated(load, edited(llama_hf, tmp_path, key, value)), f"config.json with {key}: {value!r}")


def test_both_folders_load_unedited(llama_hf: Path, mixtral_hf: Path) -> None:
    assert_accepted(isolated(load, llama_hf), "the tiny Llama transformers folder")
    assert_accepted(isolated(load, mixtral_hf), "the tiny Mixtral transformers folder")


@pytest.mark.parametrize("key", HF_REQUIRED)
def test_a_missing_required_key_is_refused(llama_hf: Path, tmp_path: Path, key: str) -> None:
    assert_refused(isolated(load, edited(llama_hf, tmp_path, key, None, delete=True)), f"config.json without {key}")


SIZE_KEYS = ["num_attention_heads", "num_key_value_heads", "hidden_size", "intermediate_size", "num_hidden_layers",
             "vocab_size", "head_dim", "max_position_embeddings"]


def _not_a_number(s: str) -> bool:
    try:
        float(s)
        return False
    except ValueError:
        return True


NOT_A_POSITIVE_INT = st.one_of(
    st.integers(max_value=0), st.booleans(), st.lists(st.integers(), max_size=2),
    st.floats().filter(lambda f: not (math.isfinite(f) and f.is_integer())),
    st.text(max_size=5).filter(_not_a_number))
HUGE_KEYS = ["hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size"]


@fuzz(25)
@given(data=st.data())
def test_a_size_that_is_not_a_positive_int_is_refused(llama_hf: Path, tmp_path_factory: pytest.TempPathFactory,
                                                      data: st.DataObject) -> None:
    if data.draw(st.booleans()):
        key, value = data.draw(st.sampled_from(SIZE_KEYS)), data.draw(NOT_A_POSITIVE_INT)
    else:  # the contract's "huge sizes"
        key, value = data.draw(st.sampled_from(HUGE_KEYS)), data.draw(st.integers(10**11, 2**80))
    folder = edited(llama_hf, tmp_path_factory.mktemp("cfg"), key, value)
    assert_refused(isolated(load, folder), f"config.json with {key}: {value!r}")


@fuzz(25)
@given(key=st.sampled_from(sorted(set(k for k, _ in HF_BAD) | {"rope_scaling", "attention_bias", "tie_word_embeddings",
                                                                 "pretraining_tp", "torch_dtype"})),
       value=yaml_values())
def test_arbitrary_json_in_a_config_key_is_refused_or_read(llama_hf: Path, tmp_path_factory: pytest.TempPathFactory,
                                                           key: str, value: Any) -> None:
    folder = edited(llama_hf, tmp_path_factory.mktemp("cfg"), key, value)
    assert_handled(isolated(load, folder), f"config.json with {key}: {value!r}")


WHOLE_FILE = {
    "a list": "[1, 2]", "a string": '"config"', "a number": "5", "null": "null", "empty": "",
    "not JSON": "{model_type:",
    "NUL bytes": '{"model_type": "llama\x00"}', "invalid UTF-8": b'{"model_type": "ll\xff\xfeama"}',
    "deep nesting": "[" * 100000 + "]" * 100000, "huge": '{"model_type": "llama", "x": "' + "y" * 20_000_000 + '"}',
    "a huge number": '{"model_type": "llama", "hidden_size": 1' + "0" * 5000 + "}",
}


@pytest.mark.parametrize("what", list(WHOLE_FILE))
def test_a_config_json_that_is_not_a_config_is_refused(llama_hf: Path, tmp_path: Path, what: str) -> None:
    dst = copy_folder(llama_hf, tmp_path / "case")
    body = WHOLE_FILE[what]
    (dst / "config.json").write_bytes(body if isinstance(body, bytes) else body.encode())
    assert_refused(isolated(load, dst), f"config.json that is {what}")
