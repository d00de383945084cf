"""The vision-language kind: `arch.text: {extends: NAME}` reuses a decoder spec, and bad vision
settings are SpecErrors that name the key."""

from __future__ import annotations

import pytest

from zoo import catalog
from zoo.compiler.errors import SpecError
from zoo.compiler.frontend import spec_from_text

VLM = """
name: my-vlm
arch:
  kind: vision-language
  vision:
    kind: vision-encoder
    dim: 64
    n_layers: 2
    image_size: 64
    patch_size: 16
    attention: {n_heads: 4}
    ffn: {kind: swiglu, hidden_dim: 128}
  text: {extends: mistral-nemo-12b, n_layers: 2}
  image_token_id: 10
"""


def load(text: str, overrides: list[str] | None = None):  # type: ignore[no-untyped-def]
    return spec_from_text(text, overrides or [], resolver=catalog.resolver(), source="my-vlm.yaml")


def test_text_extends_a_catalog_decoder_and_keys_set_here_win() -> None:
    s = load(VLM)
    nemo = catalog.get_spec("mistral-nemo-12b").arch
    assert s.arch.text == nemo.model_copy(update={"n_layers": 2})
    assert s.arch.adapter_hidden_dim == nemo.dim and s.arch.vision.grid == 4
    assert load(VLM, ["arch.text.vocab_size=1000"]).arch.text.vocab_size == 1000


def test_unknown_text_spec_suggests_the_close_name() -> None:
    with pytest.raises(SpecError, match=r"arch\.text\.extends: no spec named 'mistral-nemo-12'; "
                                        r"did you mean 'mistral-nemo-12b'"):
        load(VLM.replace("extends: mistral-nemo-12b", "extends: mistral-nemo-12"))


@pytest.mark.parametrize("change, message", [
    ("image_size: 64", r"arch\.vision\.image_size: .*image_size \(60\) is not a multiple of patch_size \(16\)"),
    ("attention: {n_heads: 4}", r"arch\.vision\.attention\.head_dim: .*2-D RoPE needs head_dim divisible by 4, got 6"),
    ("image_token_id: 10", r"arch\.image_token_id: .*131072 is not below the text vocab_size \(131072\)"),
])
def test_bad_vision_settings_name_the_key(change: str, message: str) -> None:
    bad = {"image_size: 64": "image_size: 60", "attention: {n_heads: 4}": "attention: {n_heads: 4, head_dim: 6}",
           "image_token_id: 10": "image_token_id: 131072"}[change]
    with pytest.raises(SpecError, match=message):
        load(VLM.replace(change, bad))
