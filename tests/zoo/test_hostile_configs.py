"""config.json and params.json values go through the spec's validation: a wrong value is a
FormatError naming the key, never a traceback from arithmetic on it, never a silent change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import zoo
from zoo.checkpoint import CheckpointError
from zoo.formats import FormatError
from zoo.formats.export import export_hf

TINY = ["arch.dim=64", "arch.n_layers=2", "arch.attention.n_heads=4", "arch.ffn.hidden_dim=96", "arch.vocab_size=128"]


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_hf(zoo.build("llama-2-7b", TINY), tmp_path_factory.mktemp("hf") / "llama")


def _with(folder: Path, tmp_path: Path, **changes: object) -> Path:
    out = tmp_path / "edited"
    out.mkdir()
    for p in folder.iterdir():
        if p.name != "config.json":
            shutil.copy(p, out / p.name)
    cfg = json.loads((folder / "config.json").read_text())
    for k, v in changes.items():
        if v is ...:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    (out / "config.json").write_text(json.dumps(cfg))
    return out


CASES = {
    "zero heads": ({"num_attention_heads": 0}, "num_attention_heads|n_heads: Input should be greater than 0"),
    "boolean heads": ({"num_attention_heads": True}, "expected an integer, got a boolean"),
    "string heads": ({"num_attention_heads": "4"}, "n_heads: Input should be a valid integer"),
    "string rope parameters": ({"rope_parameters": "fast"}, "AttributeError"),
    "unknown rope type": ({"rope_parameters": {"rope_type": "magic", "rope_theta": 1e4}}, "'magic' is not supported"),
    "infinite eps": ({"rms_norm_eps": float("inf")}, "eps: Input should be a finite number"),
    "string eps": ({"rms_norm_eps": "1e-5"}, "eps: Input should be a valid number"),
    "huge vocab": ({"vocab_size": 10**12}, "vocab_size: Input should be less than or equal to 16777216"),
    "list model type": ({"model_type": ["llama"]}, "model_type ['llama'] has no zoo format"),
    "bad activation": ({"hidden_act": "swish-ish"}, "hidden_act 'swish-ish' has no zoo FFN kind"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_config_values_are_format_errors(hf_folder: Path, tmp_path: Path, case: str) -> None:
    changes, message = CASES[case]
    folder = _with(hf_folder, tmp_path, **changes)
    with pytest.raises((FormatError, CheckpointError)) as info:
        zoo.load(folder)
    assert any(m in str(info.value) for m in message.split("|")), str(info.value)


@pytest.mark.parametrize("window", [-5, 0, 2.5, "big"])
def test_a_mixtral_sliding_window_must_be_a_positive_int(tmp_path: Path, window: object) -> None:
    from zoo.formats.hf import spec_from_hf_config

    cfg = {"model_type": "mixtral", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "intermediate_size": 96, "vocab_size": 128, "num_local_experts": 4,
           "num_experts_per_tok": 2, "sliding_window": window}
    with pytest.raises(FormatError, match="sliding_window"):
        spec_from_hf_config(cfg, "m")
    assert spec_from_hf_config({**cfg, "sliding_window": None}, "m").arch.attention.sliding_window is None


def test_deeply_nested_json_is_a_clear_error(hf_folder: Path, tmp_path: Path) -> None:
    out = _with(hf_folder, tmp_path)
    (out / "config.json").write_text('{"model_type": "llama", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(CheckpointError, match="not a JSON object"):
        zoo.load(out)


@pytest.mark.parametrize("params,message", [({"dim": 64, "n_layers": 2, "n_heads": 0, "vocab_size": 128}, "n_heads"),
                                            ({"dim": True, "n_layers": 2, "n_heads": 4, "vocab_size": 128}, "dim"),
                                            ({"dim": 64, "n_layers": 2, "n_heads": 4, "vocab_size": 128,
                                              "norm_eps": "tiny"}, "eps")])
def test_bad_params_json_values_are_format_errors(params: dict, message: str) -> None:
    from zoo.formats.meta import spec_from_params
    from zoo.formats.mistral import spec_from_mistral_params

    with pytest.raises(FormatError, match=message):
        spec_from_params(params, "m", 128, None)
    with pytest.raises(FormatError, match=message):
        spec_from_mistral_params({**params, "hidden_dim": 96, "head_dim": 16}, "m")
