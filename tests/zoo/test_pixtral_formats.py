"""Pixtral's checkpoint formats on a tiny random model (float32, 1e-4):

- `mistral` (params.json + consolidated.safetensors): logits of a zoo-loaded folder equal those
  of a small reference forward written here in Mistral's own convention (interleaved complex
  RoPE in both towers, consecutive pairs, 2-D angles cat(row * f[::2], col * f[1::2])), run on
  the folder's raw tensors: the q/k permutation of the key map is checked against the facts,
  not against itself;
- `hf-llava` (what transformers' save_pretrained writes) and `hf-llava-model` (its in-memory
  names): a LlavaForConditionalGeneration folder loads in zoo, zoo's export loads in
  transformers, equal logits with images;
- `zoo.load(folder)` detects each format; model.save -> zoo.load round-trips bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import zoo
from tests.pixtral_oracle import hf_llava_from, padded_pixels
from tests.runtime.test_pixtral_parity import (
    ATOL,
    RTOL,
    images,
    prompt,
    tiny,
)
from zoo.formats import bind, detect, format_for, plan_for
from zoo.formats.export import export_hf, export_mistral

pytest.importorskip("transformers")
DEEPER = ["arch.vision.n_layers=3"]  # vision and text towers of different depths ({v} vs {i})


def _model(*extra: str):  # type: ignore[no-untyped-def]
    return tiny("eager", *DEEPER, *extra)


def _logits(m, ids: torch.Tensor, imgs: list[torch.Tensor]) -> torch.Tensor:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        return m(ids, images=imgs)


# ------------------------------------------------------------------- Mistral's reference forward
def _rms(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _rotate_interleaved(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Mistral's apply_rotary_emb: consecutive pairs as complex numbers times e^(i angle).
    x (T, heads, head_dim), angles (T, head_dim/2)."""
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * torch.polar(torch.ones_like(angles), angles)[:, None]).flatten(-2)


def _block(x: torch.Tensor, sd: dict, p: str, n_heads: int, n_kv: int, angles: torch.Tensor,
           allowed: torch.Tensor) -> torch.Tensor:
    t = x.shape[0]
    h = _rms(x, sd[f"{p}.attention_norm.weight"])
    q = (h @ sd[f"{p}.attention.wq.weight"].T).view(t, n_heads, -1)
    k = (h @ sd[f"{p}.attention.wk.weight"].T).view(t, n_kv, -1)
    v = (h @ sd[f"{p}.attention.wv.weight"].T).view(t, n_kv, -1)
    q, k = _rotate_interleaved(q, angles), _rotate_interleaved(k, angles)
    k, v = (z.repeat_interleave(n_heads // n_kv, dim=1) for z in (k, v))
    scores = torch.einsum("qhd,khd->hqk", q, k) / q.shape[-1] ** 0.5
    att = torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1)
    x = x + torch.einsum("hqk,khd->qhd", att, v).reshape(t, -1) @ sd[f"{p}.attention.wo.weight"].T
    h = _rms(x, sd[f"{p}.ffn_norm.weight"])
    ffn = (F.silu(h @ sd[f"{p}.feed_forward.w1.weight"].T) * (h @ sd[f"{p}.feed_forward.w3.weight"].T))
    return x + ffn @ sd[f"{p}.feed_forward.w2.weight"].T


def mistral_reference(folder: Path, ids: list[int], imgs: list[torch.Tensor]) -> torch.Tensor:
    """Logits (T, vocab) of Mistral's model from its consolidated folder, for one sequence."""
    from safetensors.torch import load_file

    sd = load_file(str(folder / "consolidated.safetensors"))
    params = json.loads((folder / "params.json").read_text())
    ve = params["vision_encoder"]
    # vision tower: images packed, block-diagonal attention, 2-D interleaved RoPE
    vh = ve["num_attention_heads"]
    vhd = ve["hidden_size"] // vh
    freqs = 1.0 / ve["rope_theta"] ** (torch.arange(0, vhd, 2).float() / vhd)
    patches, angles, owner = [], [], []
    for n, img in enumerate(imgs):
        p = F.conv2d(img[None], sd["vision_encoder.patch_conv.weight"], stride=ve["patch_size"])[0]
        rows, cols = p.shape[1:]
        patches.append(p.flatten(1).T)
        r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
        angles.append(torch.cat([r.reshape(-1, 1) * freqs[::2], c.reshape(-1, 1) * freqs[1::2]], -1))
        owner += [n] * (rows * cols)
    x = _rms(torch.cat(patches), sd["vision_encoder.ln_pre.weight"])
    owner_t = torch.tensor(owner)
    same_image = owner_t[:, None] == owner_t[None, :]
    for i in range(ve["num_hidden_layers"]):
        x = _block(x, sd, f"vision_encoder.transformer.layers.{i}", vh, vh, torch.cat(angles), same_image)
    feats = F.gelu(x @ sd["vision_language_adapter.w_in.weight"].T + sd["vision_language_adapter.w_in.bias"])
    feats = feats @ sd["vision_language_adapter.w_out.weight"].T + sd["vision_language_adapter.w_out.bias"]
    # decoder: [IMG] positions take the features; 1-D interleaved RoPE; causal
    tokens = torch.tensor(ids)
    h = sd["tok_embeddings.weight"][tokens].clone()
    h[tokens == ve["image_token_id"]] = feats
    hd = params["head_dim"]
    inv = 1.0 / params["rope_theta"] ** (torch.arange(0, hd, 2).float() / hd)
    ang = torch.arange(len(ids)).float()[:, None] * inv
    causal = torch.ones(len(ids), len(ids), dtype=torch.bool).tril()
    for i in range(params["n_layers"]):
        h = _block(h, sd, f"layers.{i}", params["n_heads"], params["n_kv_heads"], ang, causal)
    return _rms(h, sd["norm.weight"], params["norm_eps"]) @ sd["output.weight"].T


def test_mistral_folder_matches_mistral_reference_forward(tmp_path: Path) -> None:
    m = _model()
    imgs = images()
    ids = prompt(imgs)
    folder = export_mistral(m, tmp_path / "mistral")
    assert sorted(p.name for p in folder.iterdir()) == ["consolidated.safetensors", "params.json"]
    assert detect(folder) == "mistral"
    loaded = zoo.load(folder, backend="eager")
    assert loaded.spec.arch == m.spec.arch
    ref = mistral_reference(folder, ids, imgs)
    assert ref.abs().max() > 1.0
    ours = _logits(loaded, torch.tensor([ids]), imgs)[0]
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(_logits(m, torch.tensor([ids]), imgs)[0], ref, atol=ATOL, rtol=RTOL)
    # the permutation is real in both towers: Mistral's q rows are not the zoo's
    from safetensors.torch import load_file

    raw = load_file(str(folder / "consolidated.safetensors"))
    for ours_q, theirs_q in (("blocks.0.attn.q.weight", "layers.0.attention.wq.weight"),
                             ("vision.blocks.2.attn.k.weight", "vision_encoder.transformer.layers.2.attention.wk.weight")):
        assert not torch.equal(raw[theirs_q], m.state_dict()[ours_q])
        assert torch.equal(raw[theirs_q].sort(0).values, m.state_dict()[ours_q].sort(0).values)  # same rows


def test_mistral_params_json_round_trips_the_spec(tmp_path: Path) -> None:
    from zoo.formats.mistral import mistral_params, spec_from_mistral_params

    s = zoo.spec("pixtral-12b")
    params = mistral_params(s)
    assert params["vision_encoder"] == {
        "hidden_size": 1024, "num_channels": 3, "image_size": 1024, "patch_size": 16, "rope_theta": 10000.0,
        "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16, "image_token_id": 10,
        "adapter_bias": True, "image_break_token_id": 12, "image_end_token_id": 13}
    assert {k: params[k] for k in ("dim", "n_layers", "head_dim", "hidden_dim", "n_heads", "n_kv_heads",
                                   "rope_theta", "vocab_size")} == {
        "dim": 5120, "n_layers": 40, "head_dim": 128, "hidden_dim": 14336, "n_heads": 32, "n_kv_heads": 8,
        "rope_theta": 1e9, "vocab_size": 131072}
    back = spec_from_mistral_params(params, "pixtral", "tekken.json")
    assert back.arch == s.arch and back.tokenizer.kind == "tekken"
    text = spec_from_mistral_params({k: v for k, v in params.items() if k != "vision_encoder"}, "nemo")
    assert text.arch == zoo.spec("mistral-nemo-12b").arch
    from zoo.formats import FormatError

    with pytest.raises(FormatError, match="patch merger"):
        spec_from_mistral_params({**params, "vision_encoder": {**params["vision_encoder"],
                                                               "mm_projector_id": "patch_merge"}}, "small-3.1")


@pytest.mark.parametrize("fmt", ["mistral", "hf-llava", "hf-llava-model", "canonical"])
def test_vision_formats_round_trip_bit_exactly(fmt: str) -> None:
    m = _model()
    state = m.state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    plan = bind(format_for(fmt, shapes), m.spec, shapes)
    external = dict(plan.to_external(state))
    assert {k: tuple(v.shape) for k, v in external.items()} == plan.external_shapes()
    assert len(external) == len(state)
    back = {c: t for b, ts in plan.to_canonical(external.__getitem__) for c, t in zip(b.canonical, ts)}
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)


def test_vision_rules_use_the_vision_tower_sizes() -> None:
    s = zoo.spec("pixtral-12b")  # text: 32 heads of 128 over 40 layers; vision: 16 heads of 64 over 24
    shapes = plan_for("mistral", s).external_shapes()
    assert shapes["vision_encoder.transformer.layers.23.attention.wq.weight"] == (1024, 1024)
    assert "vision_encoder.transformer.layers.24.attention.wq.weight" not in shapes
    assert shapes["layers.39.attention.wk.weight"] == (1024, 5120)
    step = plan_for("mistral", s).bindings
    q = next(b for b in step if b.canonical == ["vision.blocks.0.attn.q.weight"])
    assert q.chain.steps[0].heads == 16


# ------------------------------------------------------------------- transformers' Llava
def test_transformers_llava_folder_loads_in_zoo_with_equal_logits(tmp_path: Path) -> None:
    m = _model()
    ref = hf_llava_from(m)
    ref.save_pretrained(tmp_path / "hf")
    assert detect(tmp_path / "hf") == "hf-llava"
    loaded = zoo.load(tmp_path / "hf", backend="eager")
    assert loaded.spec.arch == m.spec.arch
    imgs = images()[:2]
    ids = torch.tensor([prompt(imgs)])
    pixels, sizes = padded_pixels(imgs)
    with torch.no_grad():
        theirs = ref(input_ids=ids, pixel_values=pixels, image_sizes=sizes).logits
    assert theirs.abs().max() > 1.0
    torch.testing.assert_close(_logits(loaded, ids, imgs), theirs, atol=ATOL, rtol=RTOL)


def test_in_memory_llava_names_load_too(tmp_path: Path) -> None:
    """transformers' state_dict names (model.language_model.*, lm_head): the alternative layout."""
    from safetensors.torch import save_file

    m = _model()
    ref = hf_llava_from(m)
    ref.save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "model.safetensors").unlink()
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "hf" / "model.safetensors"))
    from zoo.formats import open_checkpoint

    ckpt = open_checkpoint(tmp_path / "hf")
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert ckpt.plan(ckpt.spec, shapes).format.name == "hf-llava-model"
    loaded = zoo.load(tmp_path / "hf", backend="eager")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in m.state_dict().items())


def test_zoo_export_loads_in_transformers_with_equal_logits(tmp_path: Path) -> None:
    from transformers import LlavaForConditionalGeneration

    m = _model()
    imgs = images()
    ids = torch.tensor([prompt(imgs)])
    pixels, sizes = padded_pixels(imgs)
    ours = _logits(m, ids, imgs)
    for folder in (export_hf(m, tmp_path / "hf"), m.save(tmp_path / "zoo", max_shard_size="100KB")):
        cfg = json.loads((folder / "config.json").read_text())
        assert cfg["model_type"] == "llava" and cfg["vision_config"]["hidden_act"] == "silu"
        ref = LlavaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32,
                                                            attn_implementation="eager").eval()
        with torch.no_grad():
            theirs = ref(input_ids=ids, pixel_values=pixels, image_sizes=sizes).logits
        torch.testing.assert_close(theirs, ours, atol=ATOL, rtol=RTOL)


def test_zoo_checkpoint_round_trips(tmp_path: Path) -> None:
    m = _model()
    folder = m.save(tmp_path / "ckpt")
    assert detect(folder) == "zoo" and "layout: hf-llava" in (folder / "zoo.yaml").read_text()
    back = zoo.load(folder, backend="eager")
    assert back.spec == m.spec
    assert all(torch.equal(back.state_dict()[k], v) for k, v in m.state_dict().items())
    imgs = images()
    ids = torch.tensor([prompt(imgs)])
    assert torch.equal(_logits(back, ids, imgs), _logits(m, ids, imgs))
    # a spec transformers cannot run is stored under canonical names, and still round-trips
    odd = tiny("eager", "arch.vision.norm.eps=1e-6")
    folder = odd.save(tmp_path / "odd")
    assert "layout: canonical" in (folder / "zoo.yaml").read_text() and not (folder / "config.json").exists()
    back = zoo.load(folder, backend="eager")
    assert all(torch.equal(back.state_dict()[k], v) for k, v in odd.state_dict().items())


def test_convert_between_the_three_layouts(tmp_path: Path) -> None:
    from zoo.cli import main as cli

    m = _model()
    m.save(tmp_path / "zoo")
    assert cli(["convert", str(tmp_path / "zoo"), "--to", "mistral", str(tmp_path / "mistral")]) == 0
    # Mistral's repos may keep a transformers copy beside: only consolidated*.safetensors is read
    from safetensors.torch import save_file

    save_file({"junk": torch.zeros(3)}, str(tmp_path / "mistral" / "model.safetensors"))
    assert cli(["convert", str(tmp_path / "mistral"), "--to", "hf", str(tmp_path / "hf")]) == 0
    back = zoo.load(tmp_path / "hf", backend="eager")
    assert all(torch.equal(back.state_dict()[k], v) for k, v in m.state_dict().items())
