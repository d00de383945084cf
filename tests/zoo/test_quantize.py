"""`quantize=` on zoo.load/zoo.build, quantized checkpoints and `zoo quantize`: a quantized
model computes what its dequantized float twin computes (logits within 1e-4), saves and loads
back bit-exactly without quantizing again, and bad options are typed errors."""

from __future__ import annotations

import copy

import pytest
import torch
from zoo.compiler.errors import SpecError, UsageError
from zoo.runtime.kernels.block_step import structure
from zoo.runtime.quant import QuantLinear

import zoo
from zoo.checkpoint.quantize import quantize_model

OV = ["arch.dim=128", "arch.n_layers=2", "arch.vocab_size=256", "arch.attention.n_heads=4",
      "arch.attention.n_kv_heads=2", "arch.ffn.hidden_dim=256", "arch.max_seq_len=64"]
SCHEMES = [{"kind": "int8"}, {"kind": "int4", "group_size": 32}, {"kind": "int4", "group_size": 64, "symmetric": False},
           {"kind": "int4", "group_size": 128}]


@pytest.fixture(scope="module")
def float_model():
    m = zoo.build("llama-2-7b", OV, seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.08)
    return m.eval()


def quantized(m, section):
    return quantize_model(copy.deepcopy(m), section)


def dequantized_twin(q, m):
    """The float model whose linears hold what `q`'s integers stand for."""
    twin = copy.deepcopy(m)
    with torch.no_grad():
        for name, mod in q.named_modules():
            if isinstance(mod, QuantLinear):
                twin.get_submodule(name).weight.copy_(mod.dequantized_weight())
    return twin


@pytest.fixture
def exact_kernels():
    """Decode kernels that compute x @ dequant(W) in float32 (symmetric int4 on AVX512_BF16 CPUs
    rounds x to bf16: tests/runtime/test_quant_kernels.py checks that path)."""
    from zoo.runtime import kernels

    lib = kernels.library()
    if lib is not None:
        lib.zoo_set_isa(min(2, lib.zoo_set_isa(0)))
    yield
    if lib is not None:
        lib.zoo_set_isa(0)


@pytest.mark.parametrize("section", SCHEMES, ids=lambda s: "-".join(map(str, s.values())))
def test_logits_equal_the_dequantized_float_model(float_model, section, exact_kernels):
    q = quantized(float_model, section)
    assert q.spec.quantization.kind == section["kind"]
    mods = [m for m in q.modules() if isinstance(m, QuantLinear)]
    assert len(mods) == 2 * 7 and type(q.embed).__name__ == "Embedding"  # every block linear; embed, output float
    assert not isinstance(q.output, QuantLinear)
    twin = dequantized_twin(q, float_model)
    x = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(q(x), twin(x), rtol=1e-4, atol=1e-4)
    assert q.generate([[1, 5, 9]], max_new_tokens=8) == twin.generate([[1, 5, 9]], max_new_tokens=8)


def test_the_native_decode_step_takes_quantized_blocks(float_model):
    for section in ({"kind": "int8"}, {"kind": "int4", "group_size": 32, "symmetric": False}):
        q = quantized(float_model, section)
        assert structure(q.blocks[0]) == (True, "LLaMA-style block")
    assert structure(float_model.blocks[0])[0]


def test_save_and_load_back_bit_exactly(float_model, tmp_path, monkeypatch):
    q = quantized(float_model, {"kind": "int4", "group_size": 32, "symmetric": False})
    q.save(tmp_path / "q")
    assert not (tmp_path / "q" / "config.json").exists()  # transformers cannot read these tensors
    assert "quantization:" in (tmp_path / "q" / "zoo.yaml").read_text()
    import zoo.runtime.quant.functional as fn

    monkeypatch.setattr(fn, "quantize_int4", lambda *a, **k: pytest.fail("a stored model was quantized again"))
    r = zoo.load(tmp_path / "q")
    assert r.spec == q.spec
    a, b = q.state_dict(), r.state_dict()
    assert a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)
    x = torch.randint(0, 256, (1, 9))
    with torch.no_grad():
        assert torch.equal(q(x), r(x))
    assert zoo.load(tmp_path / "q", quantize={"kind": "int4", "symmetric": False}).spec == q.spec  # as stored
    with pytest.raises(UsageError, match="quantizing it again"):
        zoo.load(tmp_path / "q", quantize="int8")
    with pytest.raises(Exception, match="zoo's own folders"):
        zoo.convert(tmp_path / "q", tmp_path / "hf", "hf")


def test_load_and_build_take_quantize(float_model, tmp_path):
    float_model.save(tmp_path / "f")
    m = zoo.load(tmp_path / "f", quantize="int4", group_size=64, skip=["blocks.1.*"])
    assert m.spec.quantization.group_size == 64
    assert isinstance(m.blocks[0].ffn.down, QuantLinear) and not isinstance(m.blocks[1].ffn.down, QuantLinear)
    b = zoo.build("llama-2-7b", OV, quantize="int8")
    assert isinstance(b.blocks[0].attn.q, QuantLinear) and b.blocks[0].attn.q.qweight.abs().max() > 0
    meta = zoo.build("llama-2-7b", OV, quantize="int8", init="meta")
    assert meta.blocks[0].attn.q.qweight.is_meta


def test_explain_shows_the_stored_bytes():
    c = zoo.compile("llama-2-7b", [*OV, "quantization.kind=int4"])
    text = c.explain()
    assert "stored (int4 g32)" in text and "_weight_int4pack_mm_for_cpu" in text
    s = c.accounting.stored
    shapes = [(128, 128), (64, 128), (64, 128), (128, 128), (256, 128), (256, 128), (128, 256)]  # q k v o gate up down
    assert s.matrices == 14
    assert s.quantized_bytes == 2 * sum(n * k // 2 + n * (k // 32) * 4 for n, k in shapes)


def test_bad_options_are_typed_errors(float_model):
    with pytest.raises(SpecError, match="quantization.kind"):
        zoo.build("llama-2-7b", OV, quantize="int3", init="meta")
    with pytest.raises(SpecError, match=r"quantization.group_size.*does not divide.*expected group_size 32 or 64"):
        zoo.build("llama-2-7b", [*OV, "arch.dim=192", "arch.attention.n_heads=6", "arch.attention.n_kv_heads=3"],
                  quantize="int4", group_size=128, init="meta")
    with pytest.raises(SpecError, match="group_size"):
        zoo.build("llama-2-7b", OV, quantize="int4", group_size=48, init="meta")
    with pytest.raises(SpecError, match="int8 has one scale per output channel"):
        zoo.build("llama-2-7b", OV, quantize="int8", group_size=32, init="meta")
    with pytest.raises(UsageError, match="quantize takes"):
        zoo.build("llama-2-7b", OV, quantize=8, init="meta")
    with pytest.raises(UsageError, match="go with quantize"):
        zoo.build("llama-2-7b", OV, group_size=32, init="meta")
    with pytest.raises(UsageError, match="already stored"):
        quantize_model(quantized(float_model, {"kind": "int8"}), {"kind": "int4"})


def test_cli_quantize(float_model, tmp_path, capsys):
    from zoo.cli.main import main

    float_model.save(tmp_path / "f")
    assert main(["quantize", str(tmp_path / "f"), "--to", "int4", "--group-size", "64", str(tmp_path / "q")]) == 0
    assert "int4 g64" in capsys.readouterr().out
    m = zoo.load(tmp_path / "q")
    assert m.spec.quantization.group_size == 64 and isinstance(m.blocks[0].attn.q, QuantLinear)
    assert main(["quantize", str(tmp_path / "f"), "--to", "int4", "--group-size", "256", str(tmp_path / "bad")]) == 2
    assert "does not divide" in capsys.readouterr().err


def test_tiny_code_int8_greedy_equals_float():
    """The README's prompt: int8 weights give the float model's greedy text (64 tokens). (For
    "def fib(n):" they part at token 49, where float's top two logits are 0.011 apart.)"""
    f = zoo.load("tiny-code", dtype="float32")
    q = zoo.load("tiny-code", dtype="float32", quantize="int8")
    prompt = "def fibonacci(n):"
    assert q.generate_text(prompt, max_new_tokens=64) == f.generate_text(prompt, max_new_tokens=64)
