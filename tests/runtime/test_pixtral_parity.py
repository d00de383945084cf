"""Pixtral parity on tiny random weights (float32, 1e-4): the vision encoder against
transformers' PixtralVisionModel with several images of different sizes in one call, and the
whole model against LlavaForConditionalGeneration (Pixtral tower + Mistral decoder): prefill
logits with images in the prompt, then KV-cache decode steps; plus the typed input errors."""

from __future__ import annotations

import pytest
import torch

import zoo
from tests.pixtral_oracle import hf_llava_from, hf_pixtral_vision_from, image_tokens, padded_pixels
from zoo.runtime.modules.multimodal import ImageTokenMismatch
from zoo.runtime.modules.vision import VisionInputError, rope_2d_tables

ATOL = RTOL = 1e-4
PATCH = 4
TINY = ["arch.text.dim=64", "arch.text.n_layers=2", "arch.text.vocab_size=128", "arch.text.ffn.hidden_dim=96",
        "arch.text.max_seq_len=256", "arch.text.attention.n_heads=4", "arch.text.attention.n_kv_heads=2",
        "arch.text.attention.head_dim=16", "arch.vision.dim=32", "arch.vision.n_layers=2",
        "arch.vision.attention.n_heads=2", "arch.vision.ffn.hidden_dim=48", f"arch.vision.patch_size={PATCH}",
        "arch.vision.image_size=32"]  # a grid of 8 x 8 patches; head_dim 16 in both towers


def tiny(backend: str = "eager", *extra: str):  # type: ignore[no-untyped-def]
    m = zoo.build("pixtral-12b", TINY + list(extra), backend=backend, seed=1).eval()
    # random init at std 0.02 leaves activations near zero; bigger weights make the comparison meaningful
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:
                p.mul_(5.0)
    return m


def images(seed: int = 0) -> list[torch.Tensor]:
    """Three images of different sizes and aspect ratios: 2x3, 3x1 and 4x5 patches."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, h, w, generator=g) for h, w in ((8, 12), (12, 4), (16, 20))]


def prompt(imgs: list[torch.Tensor], text: tuple[int, ...] = (21, 37, 5)) -> list[int]:
    """[BOS] img0 tokens, some text, img1 tokens, …, then text: the images interleaved with text."""
    out = [1]
    for i, img in enumerate(imgs):
        out += image_tokens(img, PATCH) + [40 + i, 41 + i]
    return out + list(text)


# ---------------------------------------------------------------------------------- vision encoder
@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_vision_encoder_matches_transformers_on_mixed_sizes(backend: str) -> None:
    m = tiny(backend)
    ref = hf_pixtral_vision_from(m)
    imgs = images()
    pixels, sizes = padded_pixels(imgs)
    with torch.no_grad():
        ours = m.vision(imgs)
        theirs = ref(pixels, image_sizes=sizes).last_hidden_state[0]
    assert ours.shape == (6 + 3 + 20, 32)
    assert theirs.abs().max() > 1.0
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=RTOL)
    # block-diagonal: each image's features are those of the image encoded alone
    with torch.no_grad():
        alone = torch.cat([m.vision([img]) for img in imgs])
    torch.testing.assert_close(ours, alone, atol=ATOL, rtol=RTOL)


def test_rope_2d_matches_transformers_axial_rope() -> None:
    m = tiny()
    ref = hf_pixtral_vision_from(m)
    grid = [(3, 5)]
    pos = torch.stack(torch.meshgrid(torch.arange(3), torch.arange(5), indexing="ij"), -1).reshape(-1, 2)
    cos_ref, sin_ref = ref.patch_positional_embedding(torch.zeros(1, dtype=torch.float32), pos)
    cos, sin = rope_2d_tables(grid, 16, 10000.0, None, torch.float32)
    torch.testing.assert_close(cos[0, 0], cos_ref, atol=0, rtol=0)
    torch.testing.assert_close(sin[0, 0], sin_ref, atol=0, rtol=0)


def test_block_diagonal_attention_backends_agree() -> None:
    from zoo.runtime import backends

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 4, 13, 8, generator=g) for _ in range(3))
    seqlens = [6, 3, 4]
    eager = backends.get("eager").block_diagonal_attention(q, k, v, seqlens, 8 ** -0.5)
    sdpa = backends.get("sdpa").block_diagonal_attention(q, k, v, seqlens, 8 ** -0.5)
    torch.testing.assert_close(sdpa, eager, atol=1e-6, rtol=1e-6)
    start = 0
    for n in seqlens:  # each block is plain full attention over itself
        s = slice(start, start + n)
        alone = torch.softmax(q[:, :, s] @ k[:, :, s].transpose(-1, -2) * 8 ** -0.5, -1) @ v[:, :, s]
        torch.testing.assert_close(eager[:, :, s], alone, atol=1e-6, rtol=1e-6)
        start += n


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="xformers runs on CUDA only")
def test_xformers_block_diagonal_matches_sdpa_on_cuda() -> None:
    pytest.importorskip("xformers")
    from zoo.runtime import backends

    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    q, k, v = (torch.randn(1, 4, 13, 64, generator=g, device=dev, dtype=torch.float16) for _ in range(3))
    seqlens = [6, 3, 4]
    ours = backends.get("xformers", dev).block_diagonal_attention(q, k, v, seqlens, 0.125)
    ref = backends.get("sdpa", dev).block_diagonal_attention(q, k, v, seqlens, 0.125)
    torch.testing.assert_close(ours, ref, atol=2e-3, rtol=2e-3)


# ---------------------------------------------------------------------------------- the whole model
@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_prefill_and_kv_cache_decoding_match_llava(backend: str) -> None:
    m = tiny(backend)
    ref = hf_llava_from(m)
    imgs = images()[:2]
    ids = torch.tensor([prompt(imgs)])
    pixels, sizes = padded_pixels(imgs)
    cache = m.new_cache(1, 64)
    with torch.no_grad():
        ours = m(ids, images=imgs, cache=cache)
        out = ref(input_ids=ids, pixel_values=pixels, image_sizes=sizes, use_cache=True)
        theirs, past = out.logits, out.past_key_values
        assert theirs.abs().max() > 1.0
        torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=RTOL)
        nxt = theirs[:, -1].argmax(-1, keepdim=True)
        for _ in range(6):  # decode steps: our cache against transformers' cache
            ours = m(nxt, cache=cache)
            out = ref(input_ids=nxt, past_key_values=past, use_cache=True)
            past = out.past_key_values
            torch.testing.assert_close(ours, out.logits, atol=ATOL, rtol=RTOL)
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
    assert cache.length == ids.shape[1] + 6


def test_batch_of_prompts_fills_images_in_order() -> None:
    m = tiny("sdpa")
    ref = hf_llava_from(m)
    imgs = images()
    rows = [prompt(imgs[:1]), prompt(imgs[1:])]  # row 0: image 0; row 1: images 1 and 2
    width = max(len(r) for r in rows)
    rows = [r + [7] * (width - len(r)) for r in rows]  # equal lengths, text filler: no padding needed
    ids = torch.tensor(rows)
    pixels, sizes = padded_pixels(imgs)
    with torch.no_grad():
        ours = m(ids, images=imgs)
        theirs = ref(input_ids=ids, pixel_values=pixels, image_sizes=sizes).logits
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=RTOL)


def test_incremental_decoding_with_images_equals_full_forward() -> None:
    m = tiny("sdpa")
    imgs = images()[1:]
    ids = torch.tensor([prompt(imgs) + [9, 17, 33, 2, 65]])
    n = ids.shape[1] - 5
    with torch.no_grad():
        full = m(ids, images=imgs)
        cache = m.new_cache(1, ids.shape[1] + 4)
        parts = [m(ids[:, :n], images=imgs, cache=cache)]
        parts += [m(ids[:, t:t + 1], cache=cache) for t in range(n, ids.shape[1])]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=ATOL, rtol=RTOL)


def test_greedy_generation_with_images_equals_transformers() -> None:
    m = tiny("sdpa")
    ref = hf_llava_from(m)
    imgs = images()[:2]
    ids = torch.tensor([prompt(imgs)])
    pixels, sizes = padded_pixels(imgs)
    with torch.no_grad():
        theirs = ref.generate(input_ids=ids, pixel_values=pixels, image_sizes=sizes, max_new_tokens=12,
                              do_sample=False, eos_token_id=None, pad_token_id=0)
    ours = m.generate(ids, images=imgs, max_new_tokens=12)
    assert ours[0] == theirs[0, ids.shape[1]:].tolist()


def test_left_padded_batch_generation_with_images_equals_each_prompt_alone() -> None:
    m = tiny("sdpa")
    imgs = images()
    rows = [prompt(imgs[:1]), prompt(imgs[1:], text=(5,))]  # different lengths: row 0 is left-padded
    assert len(rows[0]) != len(rows[1])
    both = m.generate(rows, images=imgs, max_new_tokens=8)
    assert both[0] == m.generate([rows[0]], images=imgs[:1], max_new_tokens=8)[0]
    assert both[1] == m.generate([rows[1]], images=imgs[1:], max_new_tokens=8)[0]


# ---------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("bad, message", [
    (torch.randn(8, 12), r"image 0: expected a \[3, H, W\] tensor, got \[8, 12\]"),
    (torch.randn(4, 8, 12), r"image 0: expected a \[3, H, W\] tensor, got \[4, 8, 12\]"),
    (torch.randn(1, 3, 8, 12), r"expected a \[3, H, W\] tensor"),
    (torch.randn(3, 8, 10), r"multiples of the patch size 4, got 8x10"),
    (torch.randn(3, 36, 8), r"36x8 is larger than the model's 32x32 \(8x8 patches\)"),
    (torch.zeros(3, 8, 8, dtype=torch.uint8), r"floating-point pixels"),
])
def test_bad_images_raise_a_typed_error(bad: torch.Tensor, message: str) -> None:
    m = tiny()
    with pytest.raises(VisionInputError, match=message) as info:
        m.vision([bad])
    assert isinstance(info.value, ValueError)
    with pytest.raises(VisionInputError, match="image 1: "):
        m.vision([images()[0], bad])
    with pytest.raises(VisionInputError, match="no images"):
        m.vision([])


def test_image_token_count_mismatch_raises() -> None:
    m = tiny()
    imgs = images()[:2]
    ids = prompt(imgs)
    short = torch.tensor([ids[:1] + ids[2:]])  # one [IMG] too few
    with pytest.raises(ImageTokenMismatch, match=r"has 8 \[IMG\] tokens \(id 10\) but its 2 image\(s\) "
                                                 r"\(8x12, 12x4\) have 9 patches"):
        m(short, images=imgs)
    with pytest.raises(ImageTokenMismatch, match=r"has 6 \[IMG\] tokens .* have 9 patches"):
        m(torch.tensor([prompt(imgs[:1])]), images=imgs)  # an image too many
    with pytest.raises(ImageTokenMismatch, match=r"9 \[IMG\] tokens but no images were given"):
        m(torch.tensor([ids]))
    assert issubclass(ImageTokenMismatch, VisionInputError) and issubclass(ImageTokenMismatch, ValueError)
    # text-only prompts need no images, and a decode step may see a (sampled) [IMG] token
    cache = m.new_cache(1, 16)
    m(torch.tensor([[1, 5, 6]]), cache=cache)
    m(torch.tensor([[10]]), cache=cache)
