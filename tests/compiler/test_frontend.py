"""The spec language, working: `extends` chains, origins, interpolation, dotted overrides from
Python and the CLI, per-layer overrides by range, the LLaMA FFN rule, fingerprints, and the
JSON Schema that `zoo schema` writes for editors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

import zoo
from zoo import catalog
from zoo.cli import main
from zoo.compiler.errors import Location
from zoo.compiler.frontend import OVERRIDE, SpecResolver, apply_overrides, load_raw, spec_from_file, spec_from_text
from zoo.compiler.schema import SwiGLU, json_schema
from zoo.compiler.yaml_source import load_yaml_file, load_yaml_text

SPECS = catalog.specs_root()


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def line_of(path: Path, pattern: str) -> int:
    """1-based line of the first line matching `pattern` (so tests follow edits to the catalog)."""
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if re.search(pattern, line):
            return i
    raise AssertionError(f"{pattern!r} not in {path}")


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0, capsys.readouterr().err
    return capsys.readouterr().out


TINY = """\
name: tiny
arch:
  kind: decoder
  dim: 64
  n_layers: 3
  vocab_size: 128
  attention: {n_heads: 4, head_dim: "${div:${..dim},${.n_heads}}"}
  ffn: {kind: swiglu, multiple_of: 32}
"""


# ---------------------------------------------------------------------------------- extends
@pytest.fixture
def family(tmp_path: Path) -> Path:
    write(tmp_path, "base.yaml", """\
abstract: true
family: toy
description: the family
arch:
  kind: decoder
  vocab_size: 128
  max_seq_len: 256
  attention:
    n_heads: 4
    head_dim: ${div:${..dim},${.n_heads}}
    rope: {theta: 10000.0}
  ffn: {kind: swiglu, multiple_of: 32}
  norm: {kind: rmsnorm, eps: 1e-5}
""")
    write(tmp_path, "mid.yaml", """\
extends: base.yaml
description: mid
arch:
  dim: 64
  n_layers: 3
  attention: {rope: {theta: 500000.0}}
""")
    return write(tmp_path, "leaf.yaml", """\
extends: ./mid.yaml
arch:
  n_layers: 2
  ffn: {kind: geglu, hidden_dim: 96}
  norm: {eps: 1e-6}
""")


def test_extends_chain_child_wins_and_merges_deeply(family: Path) -> None:
    s = zoo.spec(family)
    a = s.arch
    assert s.name == "leaf" and s.family == "toy" and s.description == "mid"
    assert (a.dim, a.n_layers, a.vocab_size, a.max_seq_len) == (64, 2, 128, 256)
    # deep merge: mid changed only rope.theta, the rest of attention is base's
    assert a.attention.n_heads == 4 and a.attention.head_dim == 16 and a.attention.rope.theta == 500000.0
    assert a.norm.kind == "rmsnorm" and a.norm.eps == 1e-6


def test_a_component_whose_kind_changes_is_replaced_whole(family: Path) -> None:
    ffn = zoo.spec(family).arch.ffn
    assert ffn.kind == "geglu" and ffn.hidden_dim == 96 and ffn.multiple_of is None  # base's multiple_of is gone
    # the same kind merges instead: base's multiple_of stays beside the child's dim_multiplier
    same = zoo.spec(family.parent / "mid.yaml", ["arch.ffn={kind: swiglu, dim_multiplier: 1.5}"]).arch
    assert same.ffn.kind == "swiglu" and same.ffn.multiple_of == 32 and same.ffn.dim_multiplier == 1.5
    assert same.block(0).ffn.hidden_dim == 256  # int(1.5 * int(8*64/3)) = 255 -> 256


def test_name_and_abstract_are_not_inherited(family: Path) -> None:
    raw = load_raw(family, SpecResolver([family.parent]))
    assert not raw.abstract and "name" not in raw.data
    assert [Path(f).name for f in raw.chain] == ["leaf.yaml", "mid.yaml", "base.yaml"]
    assert spec_from_file(family).name == "leaf"
    assert zoo.spec(family.parent / "mid.yaml").name == "mid"


def test_catalog_chain() -> None:
    raw = catalog.load_raw_spec("llama-2-7b-chat")
    assert [Path(f).relative_to(SPECS).as_posix() for f in raw.chain] == [
        "llama/llama-2-7b-chat.yaml", "llama/llama-2-7b.yaml", "llama/llama-2.yaml", "llama/llama-1.yaml"]
    # a YAML path outside the catalog can extend catalog names
    assert catalog.resolver().find("llama/llama-2") == SPECS / "llama" / "llama-2.yaml"
    assert catalog.resolver().find("llama-2") == SPECS / "llama" / "llama-2.yaml"


def test_user_file_extends_a_catalog_model(tmp_path: Path) -> None:
    path = write(tmp_path, "small.yaml", "extends: llama/llama-2-7b\narch: {n_layers: 2, dim: 256}\n")
    s = zoo.spec(path)
    assert s.name == "small" and s.arch.n_layers == 2 and s.arch.dim == 256
    assert s.arch.attention.head_dim == 8  # 256 / 32 through the catalog's interpolation
    assert s.weights is not None and s.weights.repo == "meta-llama/Llama-2-7b-hf"


def test_extends_by_bare_name_searches_the_files_folder_and_the_catalog_tree(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", TINY.replace("name: tiny\n", ""))
    (tmp_path / "deep").mkdir()
    write(tmp_path / "deep", "hidden.yaml", TINY)
    assert zoo.spec(write(tmp_path, "a.yaml", "extends: base\n")).arch.dim == 64
    assert zoo.spec(write(tmp_path, "b.yaml", "extends: llama-2-7b\n")).arch.dim == 4096  # catalog subfolder
    # the folder a file happens to be in is not walked (it may be a home directory)
    with pytest.raises(zoo.SpecError, match="no spec named 'hidden'"):
        zoo.spec(write(tmp_path, "c.yaml", "extends: hidden\n"))
    assert zoo.spec(write(tmp_path, "d.yaml", "extends: deep/hidden\n")).arch.dim == 64


# ---------------------------------------------------------------------------------- origins
def test_origins_name_file_and_line() -> None:
    raw = catalog.load_raw_spec("llama-2-70b")
    l1, l2, l70 = (SPECS / "llama" / f for f in ("llama-1.yaml", "llama-2.yaml", "llama-2-70b.yaml"))
    expect = {
        ("arch", "dim"): (l70, r"^\s+dim: 8192"),
        ("arch", "attention", "n_kv_heads"): (l70, r"n_kv_heads: 8"),
        ("arch", "norm", "eps"): (l2, r"eps: 1\.0e-5"),
        ("arch", "max_seq_len"): (l2, r"max_seq_len: 4096"),
        ("arch", "vocab_size"): (l1, r"vocab_size: 32000"),
        ("arch", "attention", "head_dim"): (l1, r"head_dim:"),
        ("arch", "ffn", "kind"): (l1, r"ffn: \{kind: swiglu"),
        ("family",): (l1, r"^family:"),
    }
    for path, (file, pattern) in expect.items():
        assert raw.origins[path] == Location(str(file), line_of(file, pattern)), path


def test_origins_follow_merges_and_replacements(family: Path) -> None:
    raw = load_raw(family, SpecResolver([family.parent]))
    base, leaf = family.parent / "base.yaml", family
    # replaced whole (kind changed): nothing below arch.ffn comes from base any more
    assert raw.origins[("arch", "ffn", "kind")].file == str(leaf)
    assert ("arch", "ffn", "multiple_of") not in raw.origins
    # merged: base's keys keep their origin next to the child's
    assert raw.origins[("arch", "norm", "kind")] == Location(str(base), line_of(base, r"norm:"))
    assert raw.origins[("arch", "norm", "eps")] == Location(str(leaf), line_of(leaf, r"eps: 1e-6"))
    # a same-kind component merges, and so do its origins
    same = write(family.parent, "same.yaml", "extends: ./mid.yaml\narch:\n  ffn: {kind: swiglu, hidden_dim: 80}\n")
    raw = load_raw(same, SpecResolver([family.parent]))
    assert raw.origins[("arch", "ffn", "multiple_of")].file == str(base)
    assert raw.origins[("arch", "ffn", "hidden_dim")] == Location(str(same), 3)
    # overrides are origins too, down to the keys of a mapping value
    over = apply_overrides(raw, ["arch.n_layers=1", "arch.ffn={kind: geglu, hidden_dim: 8}"])
    assert over.origins[("arch", "n_layers")] == Location(OVERRIDE)
    assert over.origins[("arch", "ffn", "hidden_dim")] == Location(OVERRIDE)
    assert ("arch", "ffn", "multiple_of") not in over.origins


def test_show_resolved_prints_each_key_with_its_source(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_cli(capsys, "show", "--resolved", "llama-2-70b", "arch.n_layers=2")
    l2 = SPECS / "llama" / "llama-2.yaml"
    assert "# extends chain: llama/llama-2-70b.yaml -> llama/llama-2.yaml -> llama/llama-1.yaml" in out
    assert "arch.n_layers: 2  # <override>" in out
    assert f"arch.norm.eps: 1e-05  # llama/llama-2.yaml:{line_of(l2, 'eps:')}" in out
    assert "arch.attention.head_dim: 128  # llama/llama-1.yaml:" in out
    assert 'name: "llama-2-70b"  # file name' in out
    assert "arch.attention.qkv_bias: false  # default" in out


# ---------------------------------------------------------------------------------- interpolation
def test_interpolation_follows_overrides() -> None:
    assert zoo.spec("llama-2-7b").arch.attention.head_dim == 128
    s = zoo.spec("llama-2-7b", ["arch.dim=256", "arch.attention.n_heads=4"])
    assert s.arch.attention.head_dim == 64 and s.arch.block(0).attention.head_dim == 64
    # an override may itself be an interpolation
    s = zoo.spec("llama-2-7b", ["arch.max_seq_len=${mul:${arch.n_layers},2}"])
    assert s.arch.max_seq_len == 64


def test_interpolation_resolvers(tmp_path: Path) -> None:
    text = TINY.replace("vocab_size: 128", "vocab_size: ${add:${mul:${.dim},2},${sub:10,10}}")
    s = spec_from_text(text)
    assert s.arch.vocab_size == 128 and s.arch.attention.head_dim == 16
    assert isinstance(s.arch.vocab_size, int)


# ---------------------------------------------------------------------------------- overrides
def test_dotted_overrides_from_python() -> None:
    s = zoo.spec("llama-2-7b", overrides=["arch.n_layers=2", "arch.norm.eps=1e-6", "arch.attention.n_kv_heads=8",
                                          "description=tiny llama", "arch.attention.rope=null"])
    assert s.arch.n_layers == 2 and s.arch.norm.eps == 1e-6 and isinstance(s.arch.norm.eps, float)
    assert s.arch.attention.n_kv_heads == 8 and s.arch.attention.n_heads == 32
    assert s.arch.attention.rope is None and s.description == "tiny llama"
    # a mapping value merges into the component (same kind) ...
    s = zoo.spec("llama-2-7b", ["arch.attention={n_kv_heads: 4}"])
    assert (s.arch.attention.n_heads, s.arch.attention.n_kv_heads) == (32, 4)
    # ... and a ModelSpec takes overrides too
    again = zoo.spec(zoo.spec("llama-2-7b"), ["arch.n_layers=3"])
    assert again.arch.n_layers == 3 and again.arch.dim == 4096


def test_dotted_overrides_from_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_cli(capsys, "show", "llama-2-7b", "arch.n_layers=2", "arch.dim=256")
    assert out.startswith("llama-2-7b")
    assert "dim 256, 2 layers, 32 heads" in out and "head_dim 8" in out
    out = run_cli(capsys, "compile", "llama-2-7b", "arch.n_layers=2", "arch.dim=256")
    params = zoo.compile("llama-2-7b", ["arch.n_layers=2", "arch.dim=256"]).accounting.params
    assert f"{params:,} parameters" in out


# ---------------------------------------------------------------------------------- per-layer
def test_per_layer_overrides_by_range(tmp_path: Path) -> None:
    path = write(tmp_path, "mixed.yaml", TINY + """\
  layers:
    "0-1": {ffn: {kind: geglu, hidden_dim: 96}}
    "2": {norm: {kind: layernorm, eps: 1e-6}, attention: {n_heads: 4, n_kv_heads: 2, head_dim: 8}}
""")
    a = zoo.spec(path).arch
    assert [a.block(i).ffn.kind for i in range(3)] == ["geglu", "geglu", "swiglu"]
    assert [a.block(i).ffn.hidden_dim for i in range(3)] == [96, 96, 192]  # 170 rounded up to 32s
    assert [a.block(i).norm.kind for i in range(3)] == ["rmsnorm", "rmsnorm", "layernorm"]
    assert a.block(2).attention.head_dim == 8 and a.block(0).attention.head_dim == 16

    model = zoo.build(path, init="random", backend="eager")
    sd = model.state_dict()
    for i, hidden in enumerate([96, 96, 192]):
        assert type(model.blocks[i].ffn).__name__ == "GatedFFN"
        assert sd[f"blocks.{i}.ffn.gate.weight"].shape == (hidden, 64)
        assert sd[f"blocks.{i}.ffn.down.weight"].shape == (64, hidden)
    assert model.blocks[0].ffn.act is not model.blocks[2].ffn.act  # gelu vs silu
    assert [type(model.blocks[i].attn_norm).__name__ for i in range(3)] == ["RMSNorm", "RMSNorm", "LayerNorm"]
    assert "blocks.2.attn_norm.bias" in sd and "blocks.0.attn_norm.bias" not in sd
    assert sd["blocks.2.attn.k.weight"].shape == (2 * 8, 64) and sd["blocks.0.attn.k.weight"].shape == (64, 64)
    assert all(t.device.type == "cpu" for t in sd.values())
    logits = model(torch.randint(0, 128, (1, 5)))
    assert logits.shape == (1, 5, 128) and torch.isfinite(logits).all()


def test_layer_ranges_as_overrides() -> None:
    s = zoo.spec("llama-2-7b", ['arch.layers={"0-1,5": {ffn: {kind: gelu-mlp, hidden_dim: 64}}}'])
    kinds = [s.arch.block(i).ffn.kind for i in range(7)]
    assert kinds == ["gelu-mlp", "gelu-mlp", "swiglu", "swiglu", "swiglu", "gelu-mlp", "swiglu"]


# ---------------------------------------------------------------------------------- sizes, numbers
@pytest.mark.parametrize("name, hidden", [("llama-2-7b", 11008), ("llama-2-13b", 13824), ("llama-1-33b", 17920),
                                          ("llama-1-65b", 22016), ("llama-2-70b", 28672), ("codellama-34b", 22016)])
def test_llama_ffn_rule(name: str, hidden: int) -> None:
    assert zoo.spec(name).arch.block(0).ffn.hidden_dim == hidden


def test_llama_ffn_rule_directly() -> None:
    assert SwiGLU(multiple_of=4096, dim_multiplier=1.3).sized(8192).hidden_dim == 28672  # Llama 2 70B
    assert SwiGLU(multiple_of=256, dim_multiplier=1.0).sized(8192).hidden_dim == 22016  # Code Llama 34B
    assert SwiGLU(multiple_of=256).sized(4096).hidden_dim == 11008
    assert SwiGLU(hidden_dim=100, multiple_of=256).sized(4096).hidden_dim == 100  # explicit wins


def test_exponent_floats_and_plain_strings() -> None:
    data, _ = load_yaml_text("a: 1e-5\nb: 1.0e-6\nc: -2E+3\nd: 1e5\ne: 2024-01-01\nf: 0x10\n", "t.yaml")
    assert data == {"a": 1e-5, "b": 1e-6, "c": -2000.0, "d": 1e5, "e": "2024-01-01", "f": 16}
    assert all(isinstance(data[k], float) for k in "abcd")
    s = spec_from_text(TINY + "  norm: {kind: rmsnorm, eps: 1e-5}\n")
    assert s.arch.norm.eps == 1e-5 and isinstance(s.arch.norm.eps, float)
    assert zoo.spec("llama-1-7b").arch.norm.eps == 1e-6


def test_fingerprint() -> None:
    a, b = zoo.spec("llama-2-7b"), zoo.spec("llama-2-7b")
    assert a.fingerprint() == b.fingerprint() and a.fingerprint().startswith("sha256:")
    assert zoo.spec("llama-2-7b", ["arch.n_layers=32"]).fingerprint() == a.fingerprint()  # same value
    assert zoo.spec(a, ["arch.n_layers=32"]).fingerprint() == a.fingerprint()
    changed = {zoo.spec("llama-2-7b", [o]).fingerprint() for o in ["arch.norm.eps=1e-6", "arch.n_layers=31",
                                                                  "arch.attention.rope.theta=500000.0"]}
    assert len(changed) == 3 and a.fingerprint() not in changed
    assert zoo.spec("llama-2-7b-chat").fingerprint() != a.fingerprint()


# ---------------------------------------------------------------------------------- JSON Schema
_ANNOTATIONS = {"title", "description", "default", "examples", "$schema", "$defs", "discriminator"}
_KEYWORDS = {"$ref", "anyOf", "oneOf", "allOf", "const", "enum", "type", "properties", "required",
             "additionalProperties", "propertyNames", "items", "pattern", "minimum", "maximum",
             "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems"}
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is_type(x: Any, t: str) -> bool:
    if t == "integer":
        return isinstance(x, int) and not isinstance(x, bool)
    if t == "number":
        return isinstance(x, (int, float)) and not isinstance(x, bool)
    return isinstance(x, _TYPES[t])


def check_schema(node: Any, root: dict[str, Any]) -> None:
    """Every keyword is one `validate` implements (so nothing is silently skipped), every type
    is a JSON type, every $ref resolves."""
    if isinstance(node, list):
        for n in node:
            check_schema(n, root)
        return
    if not isinstance(node, dict):
        return
    unknown = set(node) - _KEYWORDS - _ANNOTATIONS
    assert not unknown, unknown
    if "$ref" in node:
        assert node["$ref"].startswith("#/$defs/") and node["$ref"].split("/")[-1] in root["$defs"]
    for t in node["type"] if isinstance(node.get("type"), list) else [node.get("type")] if "type" in node else []:
        assert t in {"integer", "number", *_TYPES}
    for key in ("properties", "$defs"):
        for sub in node.get(key, {}).values():
            check_schema(sub, root)
    for key in ("anyOf", "oneOf", "allOf", "items", "additionalProperties", "propertyNames"):
        if key in node:
            check_schema(node[key], root)


def validate(x: Any, schema: dict[str, Any], root: dict[str, Any], at: str = "$") -> list[str]:
    """The draft 2020-12 keywords pydantic emits, enough to say whether an editor would accept x."""
    errors: list[str] = []
    if "$ref" in schema:
        errors += validate(x, root["$defs"][schema["$ref"].split("/")[-1]], root, at)
    if "anyOf" in schema:
        branches = [validate(x, s, root, at) for s in schema["anyOf"]]
        if all(branches):  # say why, for each branch
            errors += [f"{at}: matches none of anyOf"] + [e for b in branches for e in b]
    if "oneOf" in schema and sum(not validate(x, s, root, at) for s in schema["oneOf"]) != 1:
        errors.append(f"{at}: does not match exactly one of oneOf")
    for s in schema.get("allOf", []):
        errors += validate(x, s, root, at)
    if "const" in schema and x != schema["const"]:
        errors.append(f"{at}: {x!r} is not {schema['const']!r}")
    if "enum" in schema and x not in schema["enum"]:
        errors.append(f"{at}: {x!r} not in {schema['enum']}")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(x, t) for t in types):
            return errors + [f"{at}: {x!r} is not {types}"]
    if isinstance(x, dict):
        props = schema.get("properties", {})
        errors += [f"{at}: {r} is required" for r in schema.get("required", []) if r not in x]
        for k, v in x.items():
            if "propertyNames" in schema:
                errors += validate(k, schema["propertyNames"], root, f"{at}.{k}<name>")
            extra = schema.get("additionalProperties", True)
            if k in props:
                errors += validate(v, props[k], root, f"{at}.{k}")
            elif extra is False:
                errors.append(f"{at}.{k}: additional property")
            elif isinstance(extra, dict):
                errors += validate(v, extra, root, f"{at}.{k}")
    if isinstance(x, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(x):
            errors += validate(v, schema["items"], root, f"{at}[{i}]")
    if isinstance(x, list) and not schema.get("minItems", 0) <= len(x) <= schema.get("maxItems", len(x)):
        errors.append(f"{at}: {len(x)} items, outside [{schema.get('minItems', 0)}, {schema.get('maxItems')}]")
    if isinstance(x, str) and "pattern" in schema and not re.search(schema["pattern"], x):
        errors.append(f"{at}: {x!r} does not match {schema['pattern']}")
    if _is_type(x, "number"):
        for key, ok in (("minimum", x >= schema.get("minimum", x)), ("maximum", x <= schema.get("maximum", x)),
                        ("exclusiveMinimum", "exclusiveMinimum" not in schema or x > schema["exclusiveMinimum"]),
                        ("exclusiveMaximum", "exclusiveMaximum" not in schema or x < schema["exclusiveMaximum"])):
            if not ok:
                errors.append(f"{at}: {x!r} fails {key} {schema[key]}")
    return errors


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    out = tmp_path_factory.mktemp("schema")
    assert main(["schema", "-o", str(out / "zoo.schema.json")]) == 0
    assert main(["schema", "--resolved", "-o", str(out / "resolved.schema.json")]) == 0
    return json.loads((out / "zoo.schema.json").read_text()), json.loads((out / "resolved.schema.json").read_text())


def test_schema_is_json_schema(schemas: tuple[dict[str, Any], dict[str, Any]]) -> None:
    for schema in schemas:
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        check_schema(schema, schema)
    file_schema, resolved = schemas
    assert file_schema["properties"]["extends"]["type"] == "string" and "extends" not in resolved["properties"]
    assert "abstract" in file_schema["properties"]
    assert "required" not in json.dumps(file_schema)  # extends can supply any key
    assert set(resolved["required"]) == {"name", "arch"}
    assert {"Attention", "Decoder", "SwiGLU", "GeGLU", "RMSNorm", "Rope"} <= set(file_schema["$defs"])


def test_schema_accepts_the_catalog(schemas: tuple[dict[str, Any], dict[str, Any]]) -> None:
    file_schema, resolved = schemas
    files = sorted(p for p in SPECS.rglob("*.yaml") if "formats" not in p.parts)
    assert len(files) >= 20
    for path in files:  # as written, with `extends`, `abstract` and `${...}`
        data, _ = load_yaml_file(path)
        assert not validate(data, file_schema, file_schema), (path, validate(data, file_schema, file_schema))
    for name in zoo.list():  # resolved
        dumped = json.loads(json.dumps(zoo.spec(name).model_dump(mode="json")))
        assert not validate(dumped, resolved, resolved), (name, validate(dumped, resolved, resolved))


@pytest.mark.parametrize("bad, where", [
    ("unknown_key_n_head.yaml", "$.arch.attention.n_head"),
    ("unknown_top_key.yaml", "$.arhc"),
    ("unknown_kind_swigl.yaml", "$.arch.ffn"),
    ("layer_range_malformed.yaml", "$.arch.layers.a-b<name>"),
    ("sliding_window_zero.yaml", "$.arch.attention.sliding_window"),
])
def test_schema_rejects_what_an_editor_should_flag(schemas: tuple[dict[str, Any], dict[str, Any]],
                                                   bad: str, where: str) -> None:
    file_schema = schemas[0]
    data, _ = load_yaml_file(Path(__file__).parent / "bad_specs" / bad)
    errors = validate(data, file_schema, file_schema)
    assert errors and any(where in e for e in errors), errors


def test_schema_function_matches_cli(schemas: tuple[dict[str, Any], dict[str, Any]]) -> None:
    assert json.loads(json.dumps(json_schema())) == schemas[0]
    assert json.loads(json.dumps(json_schema(resolved=True))) == schemas[1]
