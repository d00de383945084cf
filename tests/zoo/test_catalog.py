"""The catalog against the published facts: every model resolves, its parameter count is the
released checkpoint's exact count, and its hyperparameters are the papers' (numbers are written
here from the LLaMA / Llama 2 / Code Llama papers and the transformers configs, never read back
from the specs under test)."""

from __future__ import annotations

import contextlib
import io
import time
import tracemalloc
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import zoo
from zoo import catalog
from zoo.cli import main
from zoo.compiler.errors import SpecError, UnknownModelError, ZooError

# exact parameter counts of the released checkpoints (transformers' num_parameters())
PUBLISHED_PARAMS = {
    "llama-2-7b": 6_738_415_616,
    "llama-2-13b": 13_015_864_320,
    "llama-2-70b": 68_976_648_192,
    "llama-1-7b": 6_738_415_616,  # the same shapes as Llama 2 7B / 13B
    "llama-1-13b": 13_015_864_320,
    "llama-1-33b": 32_528_943_616,
    "llama-1-65b": 65_285_660_672,
    "codellama-7b": 6_738_546_688,  # 16 extra tokens (infilling) in embed and output
    "codellama-34b": 33_743_970_304,
    "mixtral-8x7b": 46_702_792_704,  # transformers' MixtralForCausalLM on meta
    "mistral-nemo-12b": 12_247_782_400,  # transformers on meta (Pixtral-12B's decoder)
    "pixtral-12b": 12_682_739_712,  # transformers' LlavaForConditionalGeneration on meta
}
# fine-tuned variants: the same architecture as their base
SAME_AS = {
    "llama-2-7b-chat": "llama-2-7b", "llama-2-13b-chat": "llama-2-13b", "llama-2-70b-chat": "llama-2-70b",
    "codellama-7b-instruct": "codellama-7b", "codellama-13b-instruct": "codellama-13b",
    "codellama-34b-python": "codellama-34b", "codellama-34b-instruct": "codellama-34b",
    "codellama-70b-python": "codellama-70b",
    "mixtral-8x7b-instruct": "mixtral-8x7b",
}

# name: dim, layers, heads, kv heads, ffn hidden, norm eps, rope theta, vocab, context
HYPERPARAMETERS: dict[str, tuple[int, int, int, int, int, float, float, int, int]] = {
    # LLaMA (arXiv:2302.13971, Table 2; eps from params.json)
    "llama-1-7b":             (4096, 32, 32, 32, 11008, 1e-6, 1e4, 32000, 2048),
    "llama-1-13b":            (5120, 40, 40, 40, 13824, 1e-6, 1e4, 32000, 2048),
    "llama-1-33b":            (6656, 60, 52, 52, 17920, 1e-6, 1e4, 32000, 2048),
    "llama-1-65b":            (8192, 80, 64, 64, 22016, 1e-5, 1e4, 32000, 2048),
    # Llama 2 (arXiv:2307.09288): 4k context, eps 1e-5, GQA with 8 kv heads at 70B
    "llama-2-7b":             (4096, 32, 32, 32, 11008, 1e-5, 1e4, 32000, 4096),
    "llama-2-7b-chat":        (4096, 32, 32, 32, 11008, 1e-5, 1e4, 32000, 4096),
    "llama-2-13b":            (5120, 40, 40, 40, 13824, 1e-5, 1e4, 32000, 4096),
    "llama-2-13b-chat":       (5120, 40, 40, 40, 13824, 1e-5, 1e4, 32000, 4096),
    "llama-2-70b":            (8192, 80, 64, 8, 28672, 1e-5, 1e4, 32000, 4096),
    "llama-2-70b-chat":       (8192, 80, 64, 8, 28672, 1e-5, 1e4, 32000, 4096),
    # Code Llama (arXiv:2308.12950): theta 1e6, 16k context, 16 infilling tokens on 7B/13B
    "codellama-7b":           (4096, 32, 32, 32, 11008, 1e-5, 1e6, 32016, 16384),
    "codellama-7b-instruct":  (4096, 32, 32, 32, 11008, 1e-5, 1e6, 32016, 16384),
    "codellama-7b-python":    (4096, 32, 32, 32, 11008, 1e-5, 1e6, 32000, 16384),
    "codellama-13b":          (5120, 40, 40, 40, 13824, 1e-5, 1e6, 32016, 16384),
    "codellama-13b-instruct": (5120, 40, 40, 40, 13824, 1e-5, 1e6, 32016, 16384),
    "codellama-13b-python":   (5120, 40, 40, 40, 13824, 1e-5, 1e6, 32000, 16384),
    "codellama-34b":          (8192, 48, 64, 8, 22016, 1e-5, 1e6, 32000, 16384),
    "codellama-34b-instruct": (8192, 48, 64, 8, 22016, 1e-5, 1e6, 32000, 16384),
    "codellama-34b-python":   (8192, 48, 64, 8, 22016, 1e-5, 1e6, 32000, 16384),
    "codellama-70b":          (8192, 80, 64, 8, 28672, 1e-5, 1e6, 32016, 16384),
    "codellama-70b-python":   (8192, 80, 64, 8, 28672, 1e-5, 1e6, 32016, 16384),
    "codellama-70b-instruct": (8192, 80, 64, 8, 28672, 1e-5, 1e4, 32016, 4096),  # as released
    # multi-token prediction (arXiv:2404.19737; facebook/multi-token-prediction): Llama-2-7B
    # shapes, 32 blocks in total of which the last n_future are heads
    "mtp-7b-200b-1":          (4096, 32, 32, 32, 11008, 1e-5, 1e4, 32000, 4096),
    "mtp-7b-200b-4":          (4096, 32, 32, 32, 11008, 1e-5, 1e4, 32000, 4096),
    "mtp-7b-1t-1":            (4096, 32, 32, 32, 11008, 1e-5, 1e4, 32000, 4096),
    "mtp-7b-1t-4":            (4096, 32, 32, 32, 11008, 1e-5, 1e4, 32000, 4096),
}
# mixture-of-experts models (Mixtral, arXiv:2401.04088; the released config.json):
# dim, layers, heads, kv heads, expert hidden, experts, top_k, norm eps, rope theta, vocab, context, active params
MOE_MODELS: dict[str, tuple[int, int, int, int, int, int, int, float, float, int, int, int]] = {
    "mixtral-8x7b":          (4096, 32, 32, 8, 14336, 8, 2, 1e-5, 1e6, 32000, 32768, 12_879_925_248),
    "mixtral-8x7b-instruct": (4096, 32, 32, 8, 14336, 8, 2, 1e-5, 1e6, 32000, 32768, 12_879_925_248),
}
# Mistral NeMo 12B (params.json): dim, layers, heads, kv heads, ffn hidden, norm eps, rope theta, vocab, context
MISTRAL_MODELS = {"mistral-nemo-12b": (5120, 40, 32, 8, 14336, 1e-5, 1e9, 131072, 131072)}
# Pixtral-12B: the NeMo decoder plus a vision encoder and an adapter; its parameters by part
VISION_LANGUAGE_MODELS = {"pixtral-12b": {"vision": 403_489_792, "adapter": 31_467_520, "text": 12_247_782_400}}
# models zoo trains itself (no published counterpart): name -> parameter count from the spec's shapes
OWN_MODELS = {"tiny-code": 4_328_640}
N_FUTURE = {"mtp-7b-200b-1": 1, "mtp-7b-200b-4": 4, "mtp-7b-1t-1": 1, "mtp-7b-1t-4": 4}
FAMILIES = {"llama-1": "llama", "llama-2": "llama", "codellama": "codellama", "mtp-7b": "multi-token", "tiny-": "tiny", "mixtral": "mixtral"}
FAMILIES.update({"mistral-nemo": "mistral", "pixtral": "pixtral"})


@pytest.mark.parametrize("name", sorted(N_FUTURE))
def test_multi_token_models_have_their_heads(name: str) -> None:
    s = zoo.spec(name)
    assert s.arch.heads.kind == "multi_token" and s.arch.heads.n_future == N_FUTURE[name]
    assert s.weights.repo == "facebook/multi-token-prediction" and s.weights.subfolder == name.upper().replace("MTP-", "").replace("-", "_")
    ir = zoo.compile(name).ir
    assert sum(1 for n in ir.children if n.path.startswith("heads.")) == N_FUTURE[name]


def test_every_catalog_model_is_tabled() -> None:
    from tests.zoo.test_open_catalog import OPEN  # checked against their transformers classes there

    assert set(zoo.list()) == (set(HYPERPARAMETERS) | set(OWN_MODELS) | set(MOE_MODELS) | set(MISTRAL_MODELS)
                               | set(VISION_LANGUAGE_MODELS) | set(OPEN))
    assert set(PUBLISHED_PARAMS) | set(SAME_AS) <= set(zoo.list())


@pytest.mark.parametrize("name", sorted(HYPERPARAMETERS))
def test_model_resolves_with_its_hyperparameters(name: str) -> None:
    s = zoo.spec(name)
    assert s.name == name and s.schema_version == 1
    a = s.arch
    blocks = {a.block(i).model_dump_json() for i in range(a.n_layers)}
    assert len(blocks) == 1  # a uniform stack: no per-layer overrides in these models
    b = a.block(0)
    got = (a.dim, a.n_layers, b.attention.n_heads, b.attention.n_kv_heads, b.ffn.hidden_dim, b.norm.eps,
           b.attention.rope.theta, a.vocab_size, a.max_seq_len)
    assert got == HYPERPARAMETERS[name]
    assert b.attention.head_dim == 128 and b.ffn.kind == "swiglu" and b.norm.kind == "rmsnorm"
    assert not a.tie_embeddings and b.attention.rope.scaling is None
    assert not (b.attention.qkv_bias or b.attention.o_bias or b.ffn.bias)
    assert s.tokenizer is not None and s.tokenizer.kind == "sentencepiece"
    assert (s.tokenizer.infill is not None) == (name.startswith(("codellama-7b", "codellama-13b"))
                                                and "python" not in name)
    assert s.weights is not None and s.weights.repo
    assert s.weights.format == ("meta-mtp" if name in N_FUTURE else "hf-llama")
    assert s.family == FAMILIES[next(f for f in FAMILIES if name.startswith(f))]


@pytest.mark.parametrize("name", sorted(MOE_MODELS))
def test_moe_model_resolves_with_its_hyperparameters(name: str) -> None:
    s = zoo.spec(name)
    a = s.arch
    assert not a.layers and not a.tie_embeddings
    b = a.block(0)
    f = b.ffn
    assert f.kind == "moe" and f.expert.kind == "swiglu" and not f.expert.bias and f.router.normalize_top_k
    got = (a.dim, a.n_layers, b.attention.n_heads, b.attention.n_kv_heads, f.expert.hidden_dim, f.n_experts, f.top_k,
           b.norm.eps, b.attention.rope.theta, a.vocab_size, a.max_seq_len)
    assert got == MOE_MODELS[name][:-1]
    assert zoo.compile(name).accounting.active_params == MOE_MODELS[name][-1]
    assert s.weights.format == "hf-mixtral" and s.weights.repo.startswith("mistralai/Mixtral-8x7B")
    assert s.tokenizer.kind == "sentencepiece" and s.family == "mixtral"


def test_show_moe_gives_total_and_active_parameters() -> None:
    text = _show("mixtral-8x7b")
    assert "moe 8x swiglu 14336, top-2" in text
    assert "parameters       46,702,792,704" in text and "46,702,792,704 (matches the count above)" in text
    assert "active/token     12,879,925,248" in text


def test_mixtral_count_is_transformers_count_on_meta() -> None:
    from transformers import MixtralConfig, MixtralForCausalLM

    cfg = MixtralConfig(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                        num_attention_heads=32, num_key_value_heads=8, num_local_experts=8, num_experts_per_tok=2,
                        tie_word_embeddings=False)
    with torch.device("meta"):
        ref = MixtralForCausalLM(cfg)
    assert sum(p.numel() for p in ref.parameters()) == zoo.compile("mixtral-8x7b").accounting.params


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_parameter_count_is_the_published_one(name: str) -> None:
    assert zoo.compile(name).accounting.params == PUBLISHED_PARAMS[name]


@pytest.mark.parametrize("name, base", sorted(SAME_AS.items()))
def test_variants_share_their_base_architecture(name: str, base: str) -> None:
    assert zoo.spec(name).arch == zoo.spec(base).arch


def test_published_facts_in_specs_agree_with_the_compiler() -> None:
    for name in zoo.list():
        s = zoo.spec(name)
        if s.published and s.published.params:
            assert s.published.params == zoo.compile(s).accounting.params, name


# ---------------------------------------------------------------------------------- zoo show/list
class _Allocations(TorchDispatchMode):
    """Records every tensor an op creates off the meta device."""

    def __init__(self) -> None:
        super().__init__()
        self.big: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta" and t.numel() * t.element_size() > 1 << 20:
                self.big.append((str(func), t.numel() * t.element_size()))
        return out


def _show(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["show", *argv]) == 0
    return out.getvalue()


def test_show_70b_is_fast_and_allocates_nothing() -> None:
    zoo.spec("llama-2-7b")  # the catalog index, once per process
    t0 = time.perf_counter()
    text = _show("llama-2-70b")
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0, elapsed
    assert "dim 8192, 80 layers, 64 heads, 8 kv heads, head_dim 128, swiglu 28672" in text
    assert "68,976,648,192 (matches the count above)" in text

    tracemalloc.start()  # (slows Python down: not timed)
    try:
        with _Allocations() as allocs:
            _show("llama-2-70b")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not allocs.big, allocs.big  # no tensor over 1 MB, on any device but meta
    assert peak < 16 << 20, peak  # Python-side: the IR of 80 blocks is a few MB at most


def test_build_on_meta_allocates_nothing() -> None:
    with _Allocations() as allocs:
        model = zoo.build("llama-2-70b", init="meta", backend="eager")
    assert not allocs.big and all(p.device.type == "meta" for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_PARAMS["llama-2-70b"]


def test_list_shows_every_model_with_its_family(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["model", "family", "params"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == set(zoo.list())  # family files are not listed
    for name, cols in rows.items():
        assert cols[1] == zoo.spec(name).family
        if name in HYPERPARAMETERS or name in MOE_MODELS:
            assert cols[1] == FAMILIES[next(f for f in FAMILIES if name.startswith(f))]
    assert rows["llama-2-70b"][2] == "68.98B" and rows["codellama-34b"][2] == "33.74B"


# ---------------------------------------------------------------------------------- wrong names
@pytest.mark.parametrize("typo, meant", [("llama-2-7", "llama-2-7b"), ("lama-2-13b", "llama-2-13b"),
                                         ("codelama-34b", "codellama-34b"), ("Llama-2-70b-chat", "llama-2-70b-chat"),
                                         ("llama-2-7b-chatt", "llama-2-7b-chat")])
def test_unknown_model_lists_close_matches(typo: str, meant: str) -> None:
    with pytest.raises(UnknownModelError) as info:
        zoo.spec(typo)
    err = info.value
    assert isinstance(err, ZooError) and isinstance(err, KeyError)
    assert meant in err.suggestions and len(err.suggestions) <= 3
    assert str(err).startswith(f"unknown model {typo!r}; did you mean ") and f"'{meant}'" in str(err)
    assert "zoo list" in str(err)
    with pytest.raises(UnknownModelError):
        zoo.compile(typo)


def test_unknown_model_on_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "lama-2-7b"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'lama-2-7b'; did you mean 'llama-2-7b'" in err and "Traceback" not in err


@pytest.mark.parametrize("family, size", [("llama-1", "llama-1-7b"), ("llama-2", "llama-2-7b"),
                                          ("codellama", "codellama-7b"), ("llama/llama-2", "llama-2-70b")])
def test_family_files_are_not_loadable(family: str, size: str) -> None:
    with pytest.raises(SpecError) as info:
        zoo.spec(family)
    text = str(info.value)
    assert "abstract: is a family file, not a loadable model" in text and f"'{size}'" in text
    assert f"{family.split('/')[-1]}.yaml:" in text
    # and they are not offered as models
    assert family.split("/")[-1] not in zoo.list()
    assert catalog.find(family).stem == family.split("/")[-1]


def test_own_models_are_small_multi_token_code_models() -> None:
    for name, params in OWN_MODELS.items():
        c = zoo.compile(name)
        assert c.accounting.params == params <= 20_000_000
        assert c.spec.arch.heads.kind == "multi_token" and c.spec.tokenizer.kind == "bpe"


# ---------------------------------------------------------------------------------- Pixtral
@pytest.mark.parametrize("name", sorted(MISTRAL_MODELS))
def test_mistral_model_resolves_with_its_hyperparameters(name: str) -> None:
    s = zoo.spec(name)
    a = s.arch
    b = a.block(0)
    got = (a.dim, a.n_layers, b.attention.n_heads, b.attention.n_kv_heads, b.ffn.hidden_dim, b.norm.eps,
           b.attention.rope.theta, a.vocab_size, a.max_seq_len)
    assert got == MISTRAL_MODELS[name]
    assert b.attention.head_dim == 128 != a.dim // b.attention.n_heads  # NeMo's head_dim is not dim/heads
    assert b.ffn.kind == "swiglu" and b.norm.kind == "rmsnorm" and b.attention.sliding_window is None
    assert not a.tie_embeddings and s.tokenizer.kind == "tekken" and s.family == "mistral"


def test_pixtral_composes_vision_encoder_adapter_and_the_nemo_decoder() -> None:
    s = zoo.spec("pixtral-12b")
    a = s.arch
    assert a.kind == "vision-language" and s.family == "pixtral"
    assert a.text == zoo.spec("mistral-nemo-12b").arch  # the decoder spec, reused whole
    v = a.vision
    blk = v.block()
    got = (v.dim, v.n_layers, blk.attention.n_heads, blk.attention.head_dim, blk.ffn.hidden_dim)
    assert got == (1024, 24, 16, 64, 4096)
    assert blk.ffn.kind == "swiglu" and v.norm.kind == "rmsnorm" and v.norm.eps == 1e-5 and not v.patch_bias
    got = (v.patch_size, v.image_size, v.grid, v.attention.rope.kind, v.attention.rope.theta)
    assert got == (16, 1024, 64, "rope-2d", 1e4)
    assert (a.adapter_hidden_dim, a.adapter.activation, a.adapter.bias) == (5120, "gelu", True)
    assert (a.image_token_id, a.image_break_id, a.image_end_id) == (10, 12, 13)
    assert s.weights.repo == "mistralai/Pixtral-12B-2409" and s.weights.format == "mistral"
    # an override reaches the reused decoder, and the adapter follows the decoder's width
    tiny = zoo.spec("pixtral-12b", ["arch.text.dim=256", "arch.text.n_layers=2"])
    assert tiny.arch.text.n_layers == 2 and tiny.arch.adapter_hidden_dim == 256


@pytest.mark.parametrize("name", sorted(VISION_LANGUAGE_MODELS))
def test_show_splits_a_vision_language_model_by_part_without_allocating(name: str) -> None:
    parts = VISION_LANGUAGE_MODELS[name]
    acc = zoo.compile(name).accounting
    assert acc.params == sum(parts.values()) == PUBLISHED_PARAMS[name]
    assert (acc.params_by_part["vision"], acc.params_by_part["adapter"]) == (parts["vision"], parts["adapter"])
    with _Allocations() as allocs:
        text = _show(name)
        model = zoo.build(name, init="meta", backend="eager")
    assert not allocs.big, allocs.big
    assert f"parameters       {acc.params:,}" in text and f"{acc.params:,} (matches the count above)" in text
    assert (f"parts            vision {parts['vision']:,} + adapter {parts['adapter']:,} + text {parts['text']:,}"
            in text)
    counted = {"vision": 0, "adapter": 0, "text": 0}
    for key, p in model.named_parameters():
        assert p.device.type == "meta"
        counted[key.split(".")[0] if key.startswith(("vision.", "adapter.")) else "text"] += p.numel()
    assert counted == parts


def test_pixtral_count_is_transformers_count_on_meta() -> None:
    from transformers import LlavaForConditionalGeneration

    from tests.pixtral_oracle import hf_llava_config

    with torch.device("meta"):
        ref = LlavaForConditionalGeneration(hf_llava_config(zoo.spec("pixtral-12b")))
    by = {"vision": 0, "adapter": 0, "text": 0}
    for key, p in ref.named_parameters():
        part = "vision" if ".vision_tower." in key else "adapter" if ".multi_modal_projector." in key else "text"
        by[part] += p.numel()
    assert by == VISION_LANGUAGE_MODELS["pixtral-12b"]
