"""Generation refuses what it cannot run: token ids outside the vocabulary or not ints,
prompts of the wrong shape or type, sampling arguments of the wrong type, a seed that is not
an int, non-weight dtypes and the meta device: UsageErrors, never a traceback from torch."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.compiler.errors import UsageError

TINY = ["arch.dim=64", "arch.n_layers=2", "arch.attention.n_heads=4", "arch.ffn.hidden_dim=96", "arch.vocab_size=128"]


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return zoo.build("llama-2-7b", TINY).eval()


@pytest.mark.parametrize("prompts,message", [
    ([[1, -1]], "id -1 is outside the vocabulary"), ([[1, 128]], "id 128 is outside"), ([[2**70]], "outside"),
    ([[1, "a"]], "list of token ids"), ([[1, None]], "list of token ids"), ([[1, 1.5]], "list of token ids"),
    ([[True]], "list of token ids"), ([[[1, 2]]], "list of token ids"), ("hello", "expected token ids"),
    (torch.tensor([[1.5, 2.0]]), "integer tensor"), (torch.ones(1, 2, 3, dtype=torch.long), "1-D or 2-D"),
    ([[]], "at least one token"),
])
def test_bad_prompt_tokens(model, prompts: object, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match=message):
        model.generate(prompts, max_new_tokens=2)


@pytest.mark.parametrize("kw,message", [
    ({"temperature": "hot"}, "temperature must be a number"), ({"temperature": [1.0]}, "temperature must be a number"),
    ({"seed": "abc"}, "seed must be an integer"), ({"top_k": 2.5, "temperature": 1.0}, "top_k must be an integer"),
])
def test_bad_sampling_arguments(model, kw: dict, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match=message):
        model.generate([[1, 2]], max_new_tokens=2, **kw)


@pytest.mark.parametrize("prompt", [123, ["x", None], [], None])
def test_bad_text_prompts(prompt: object) -> None:
    m = zoo.load("tiny-code")
    with pytest.raises(UsageError, match="a prompt is a string or a list of strings"):
        m.generate_text(prompt, max_new_tokens=2)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="temperature must be a number"):
        m.generate_text("def f(", max_new_tokens=2, temperature="hot")


@pytest.mark.parametrize("dtype", ["int8", "bool", "float7"])
def test_only_floating_dtypes_hold_weights(dtype: str) -> None:
    with pytest.raises(UsageError, match="dtype"):
        zoo.load("tiny-code", dtype=dtype)


def test_the_meta_device_holds_no_weights() -> None:
    with pytest.raises(UsageError, match="init='meta'"):
        zoo.load("tiny-code", device="meta")
    assert zoo.build("llama-2-7b", TINY, init="meta").embed.weight.is_meta  # the way to a weightless model


def test_nonfinite_pixels_are_refused() -> None:
    from zoo.runtime.modules.vision import VisionInputError

    m = zoo.build("pixtral-12b", ["arch.vision.dim=32", "arch.vision.n_layers=1", "arch.vision.attention.n_heads=2",
                                  "arch.vision.ffn.hidden_dim=48", "arch.text.dim=32", "arch.text.n_layers=1",
                                  "arch.text.attention.n_heads=2", "arch.text.attention.n_kv_heads=1",
                                  "arch.text.attention.head_dim=16", "arch.text.ffn.hidden_dim=48",
                                  "arch.text.vocab_size=64"])
    with pytest.raises(VisionInputError, match="NaN or infinity"):
        m.vision([torch.full((3, 32, 32), float("nan"))])
