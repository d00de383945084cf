"""Formats as data: the transforms are exact inverses, every format round-trips bit-exactly, and
a format written only in YAML (fused tensors, transposes) loads a model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import zoo
from zoo.formats import FormatError, bind, get_format, parse_format, plan_for
from zoo.formats.transforms import REGISTRY, build
from tests.zoo.weights_fixtures import GQA, TINY, tiny

SIZES = {"n_heads": 4, "n_kv_heads": 2, "q_out": 64, "kv_out": 32, "hidden": 160}
CASES = {
    "rope_permute": ({"heads": 4}, [torch.randn(64, 24)]),
    "transpose": ({}, [torch.randn(6, 5)]),
    "split": ({"dim": 0, "sizes": [4, 2, 2]}, [torch.randn(8, 3)]),
    "concat": ({"dim": 1, "sizes": [3, 5]}, [torch.randn(2, 3), torch.randn(2, 5)]),
    "stack": ({"dim": 0}, [torch.randn(4), torch.randn(4)]),
    "unstack": ({"dim": 1}, [torch.randn(3, 2, 5)]),
    "split_interleaved": ({"dim": 0, "groups": "n_heads", "sizes": [4, 2, 2]}, [torch.randn(32, 3)]),
}


def test_every_registered_transform_is_tested() -> None:
    assert set(REGISTRY) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_transforms_are_exact_inverses(name: str) -> None:
    params, xs = CASES[name]
    t = build({name: params}, SIZES, "test")
    ys = t.forward(xs)
    assert len(t.inverse(ys)) == len(xs) and all(torch.equal(a, b) for a, b in zip(t.inverse(ys), xs))
    assert all(torch.equal(a, b) for a, b in zip(t.forward(t.inverse(ys)), ys))


def test_rope_permute_is_the_reference_formula() -> None:
    n, hd, dim = 4, 16, 24
    w = torch.randn(n * hd, dim)
    t = build({"rope_permute": {"heads": "n_heads"}}, SIZES, "test")
    assert torch.equal(t.forward([w])[0], w.view(n, hd // 2, 2, dim).transpose(1, 2).reshape(n * hd, dim))
    assert torch.equal(t.inverse([w])[0], w.view(n, 2, hd // 2, dim).transpose(1, 2).reshape(n * hd, dim))


@pytest.mark.parametrize("fmt", ["hf-llama", "meta", "canonical"])
def test_formats_round_trip_bit_exactly(fmt: str) -> None:
    m = tiny("llama-2-7b", *GQA)
    from zoo.formats import format_for

    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    plan = bind(format_for(fmt, shapes), m.spec, shapes)
    state = m.state_dict()
    external = dict(plan.to_external(state))
    assert {k: tuple(v.shape) for k, v in external.items()} == plan.external_shapes()
    back = {c: t for b, ts in plan.to_canonical(external.__getitem__) for c, t in zip(b.canonical, ts)}
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)
    again = dict(plan.to_external(back))
    assert all(torch.equal(again[k], external[k]) for k in external)


def test_unknown_format_and_transform_are_named() -> None:
    with pytest.raises(FormatError, match="did you mean 'hf-llama'"):
        get_format("hf-lama")
    fmt = parse_format({"name": "x", "keys": {"embed.weight": {"name": "e", "transforms": ["transpos"]}}})
    with pytest.raises(FormatError, match="unknown transform 'transpos'; did you mean 'transpose'"):
        plan_for(fmt, zoo.spec("llama-2-7b", TINY))
    with pytest.raises(FormatError, match="unknown keys"):
        parse_format({"name": "x", "kys": {}})
    fmt = parse_format({"keys": {"blocks.{i}.attn.q.weight": {"name": "q.{i}", "transforms": [
        {"rope_permute": {"heads": "n_head"}}]}}})
    with pytest.raises(FormatError, match="unknown size 'n_head'"):
        plan_for(fmt, zoo.spec("llama-2-7b", TINY))


def test_a_format_that_cannot_hold_the_model_says_which_parameters() -> None:
    with pytest.raises(FormatError, match=r"format meta cannot hold .*blocks\.0\.attn\.q\.bias"):
        plan_for("meta", zoo.spec("llama-2-7b", TINY + ["arch.attention.qkv_bias=true"]))


FUSED = """
# a made-up layout with fused qkv and gate/up, stacked norms, a transposed o and a split down:
# what other families' formats look like, written as data only
name: fused-test
keys:
  embed.weight: wte
  norm.weight: ln_f
  output.weight: head
  blocks.{i}.attn.o.weight: {name: "h.{i}.o", transforms: [transpose]}
groups:
  - canonical: ["blocks.{i}.attn.q.weight", "blocks.{i}.attn.k.weight", "blocks.{i}.attn.v.weight"]
    external: ["h.{i}.qkv"]
    transforms: [{split: {dim: 0, sizes: [q_out, kv_out, kv_out]}}]
  - canonical: ["blocks.{i}.ffn.gate.weight", "blocks.{i}.ffn.up.weight"]
    external: ["h.{i}.gate_up"]
    transforms: [{split: {dim: 0, sizes: [hidden, hidden]}}]
  - canonical: ["blocks.{i}.attn_norm.weight", "blocks.{i}.ffn_norm.weight"]
    external: ["h.{i}.norms"]
    transforms: [{unstack: {dim: 0}}]
  - canonical: ["blocks.{i}.ffn.down.weight"]
    external: ["h.{i}.down_a", "h.{i}.down_b"]
    transforms: [{concat: {dim: 1, sizes: [100, 60]}}]
"""


def test_a_yaml_only_format_with_fused_tensors_loads_a_model(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from zoo.loading import stream_in
    from zoo.checkpoint import SafetensorsSource

    m = tiny("llama-2-7b", *GQA)
    fmt = parse_format(yaml.safe_load(FUSED), "fused-test.yaml")
    plan = plan_for(fmt, m.spec)
    external = {k: v.contiguous() for k, v in plan.to_external(m.state_dict())}
    assert external["h.0.qkv"].shape == (64 + 16 + 16, 64) and external["h.1.norms"].shape == (2, 64)
    assert external["h.0.o"].shape == (64, 64) and external["h.0.down_b"].shape == (64, 60)
    save_file(external, str(tmp_path / "model.safetensors"))

    source = SafetensorsSource(tmp_path)
    assert plan.check(source.shapes()).ok
    m2 = zoo.build("llama-2-7b", TINY + GQA, init="meta", backend="eager")
    stream_in(m2, plan, source, "cpu", None)
    assert all(torch.equal(m2.state_dict()[k], v) for k, v in m.state_dict().items())
    tokens = torch.randint(0, 128, (2, 9))
    with torch.no_grad():
        assert torch.equal(m2(tokens), m(tokens))
