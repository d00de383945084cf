"""Generation arguments and images under fuzzing, on the shipped tiny-code model and a tiny
random Pixtral: sampling arguments are validated as transformers does (temperature >= 0 and
finite, top_k >= 0, 0 < top_p <= 1, 1 <= max_new_tokens, and no more tokens than the context
holds), token ids outside the vocabulary and hostile images are refused with a ZooError, the
CLI answers `error:` with exit code 2; valid arguments keep working."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from .builders import tiny_code, tiny_vlm
from .cli import isolated_cli
from .generation_cases import (
    BAD_GENERATION,
    BAD_IMAGE_OBJECTS,
    BAD_PROMPT_IDS,
    CLI_GENERATE_BAD,
    CLI_GENERATE_GOOD,
    CONTEXT,
    GOOD_GENERATION,
    PROMPT,
    VOCAB,
    gen_ids,
    gen_text,
    write_image_files,
)
from .isolation import assert_accepted, assert_handled, assert_refused, isolated
from .strategies import bad_generation_kwargs, fuzz, good_generation_kwargs


@pytest.fixture(scope="module")
def code() -> Any:
    return tiny_code()


@pytest.mark.parametrize("kw", BAD_GENERATION, ids=repr)
def test_a_bad_sampling_argument_is_refused(code: Any, kw: dict) -> None:
    assert_refused(isolated(gen_text, code, **kw), f"generate_text({PROMPT!r}, **{kw!r})")


@pytest.mark.parametrize("kw", GOOD_GENERATION, ids=repr)
def test_a_valid_sampling_argument_is_accepted(code: Any, kw: dict) -> None:
    assert_accepted(isolated(gen_text, code, **kw), f"generate_text({PROMPT!r}, **{kw!r})")


@fuzz(25)
@given(bad_generation_kwargs())
def test_generated_bad_sampling_arguments_are_refused(code: Any, kw: dict) -> None:
    assert_refused(isolated(gen_text, code, **kw), f"generate_text({PROMPT!r}, **{kw!r})")


@fuzz(12)
@given(good_generation_kwargs())
def test_generated_valid_sampling_arguments_are_accepted(code: Any, kw: dict) -> None:
    assert_accepted(isolated(gen_text, code, **kw), f"generate_text({PROMPT!r}, **{kw!r})")


@pytest.mark.parametrize("what", list(BAD_PROMPT_IDS))
def test_bad_token_ids_are_refused(code: Any, what: str) -> None:
    assert_refused(isolated(gen_ids, code, BAD_PROMPT_IDS[what]), f"generate({what})")


@fuzz(15)
@given(st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=8), st.integers(0, 7),
       st.one_of(st.integers(max_value=-1), st.integers(min_value=VOCAB, max_value=2**63 - 1)))
def test_an_id_outside_the_vocabulary_is_refused(code: Any, ids: list[int], at: int, bad: int) -> None:
    ids = list(ids)
    ids.insert(min(at, len(ids)), bad)
    assert_refused(isolated(gen_ids, code, [ids]), f"generate([{ids}])")


@fuzz(15)
@given(st.text(max_size=60))
def test_any_prompt_text_is_completed_or_refused(code: Any, prompt: str) -> None:
    assert_handled(isolated(gen_text, code, prompt, max_new_tokens=1), f"generate_text({prompt!r})")


def test_a_prompt_longer_than_the_context_is_refused(code: Any) -> None:
    assert_refused(isolated(gen_text, code, "x = 1\n" * 2000, max_new_tokens=1), "a prompt of ~6000 tokens")


def test_prompt_plus_new_tokens_beyond_the_context_is_refused(code: Any) -> None:
    assert_refused(isolated(gen_text, code, "x = 1\n" * 100, max_new_tokens=CONTEXT - 5),
                   "a 100-line prompt and max_new_tokens = context - 5")


def test_a_batch_with_an_empty_list_and_a_non_string_prompt_is_refused(code: Any) -> None:
    assert_refused(isolated(gen_text, code, []), "generate_text([])")
    assert_refused(isolated(gen_text, code, 123), "generate_text(123)")
    assert_refused(isolated(gen_text, code, [PROMPT, None]), "generate_text([..., None])")


def test_infill_on_a_model_without_infilling_is_refused(code: Any) -> None:
    assert_refused(isolated(lambda: code.infill("def f(", "):\n")), "infill on tiny-code")


def test_speculative_decoding_with_sampling_is_refused(code: Any) -> None:
    assert_refused(isolated(gen_text, code, speculative=True, temperature=0.7), "speculative=True, temperature=0.7")


@pytest.mark.parametrize("flags", CLI_GENERATE_BAD, ids=" ".join)
def test_the_cli_refuses_bad_generation_flags_with_exit_2(code: Any, flags: list[str]) -> None:
    argv = ["generate", "tiny-code", "x", "--max-new-tokens", "2", *flags]
    assert_refused(isolated_cli(argv), "zoo " + " ".join(argv))


@pytest.mark.parametrize("flags", CLI_GENERATE_GOOD, ids=lambda f: " ".join(f) or "defaults")
def test_the_cli_accepts_valid_generation_flags(code: Any, flags: list[str]) -> None:
    argv = ["generate", "tiny-code", "x", "--max-new-tokens", "2", *flags]
    assert_accepted(isolated_cli(argv), "zoo " + " ".join(argv))


# ---------------------------------------------------------------------------------- images

@pytest.fixture(scope="module")
def vlm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return tiny_vlm(tmp_path_factory.mktemp("vlm"))


@pytest.fixture(scope="module")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return write_image_files(tmp_path_factory.mktemp("images"))


@pytest.mark.parametrize("what", ["a missing file", "a folder", "/dev/zero", "/dev/null", "/proc/self/environ",
                                  "file empty.png", "file random.png", "file truncated.png", "file text.png",
                                  "file bomb.png", "file wide.png", "file zero.png", "a FIFO"])
def test_a_hostile_image_file_is_refused(vlm: Any, image_files: dict, what: str) -> None:
    path = image_files["bad"][what]
    assert_refused(isolated(gen_text, vlm, "[IMG] hi", images=[str(path)], max_new_tokens=1), f"image {what}")


@pytest.mark.parametrize("what", list(BAD_IMAGE_OBJECTS))
def test_a_hostile_image_object_is_refused(vlm: Any, what: str) -> None:
    img = BAD_IMAGE_OBJECTS[what]
    assert_refused(isolated(gen_text, vlm, "[IMG] hi", images=[img], max_new_tokens=1), f"image {what}")


def test_image_markers_that_do_not_match_the_images_are_refused(vlm: Any, image_files: dict) -> None:
    good = str(image_files["good"])
    assert_refused(isolated(gen_text, vlm, "[IMG] [IMG] hi", images=[good], max_new_tokens=1), "2 markers, 1 image")
    assert_refused(isolated(gen_text, vlm, "[IMG] hi", images=[], max_new_tokens=1), "1 marker, no image")
    assert_refused(isolated(gen_text, vlm, ["a", "b"], images=[[good]], max_new_tokens=1), "2 prompts, 1 image list")


def test_valid_images_are_accepted(vlm: Any, image_files: dict) -> None:
    good = image_files["good"]
    for img in (str(good), good.read_bytes(), np.zeros((9, 30, 3), np.uint8), np.zeros((5, 5), np.uint8)):
        assert_accepted(isolated(gen_text, vlm, "[IMG] hi", images=[img], max_new_tokens=1), f"image {type(img)}")


def test_images_for_a_text_only_model_are_refused(code: Any, image_files: dict) -> None:
    assert_refused(isolated(gen_text, code, "hi", images=[str(image_files["good"])]), "images for tiny-code")


@fuzz(12)
@given(st.binary(min_size=0, max_size=300))
def test_arbitrary_bytes_as_an_image_are_refused(vlm: Any, raw: bytes) -> None:
    assert_refused(isolated(gen_text, vlm, "[IMG] hi", images=[raw], max_new_tokens=1), f"image bytes {raw[:40]!r}")


@fuzz(10)
@given(bad_generation_kwargs())
def test_bad_sampling_arguments_with_an_image_are_refused(vlm: Any, image_files: dict, kw: dict) -> None:
    out = isolated(gen_text, vlm, "[IMG] hi", images=[str(image_files["good"])], **kw)
    assert_refused(out, f"generate_text with an image, **{kw!r}")
