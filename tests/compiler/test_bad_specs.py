"""The bad-spec corpus: every file in bad_specs/ must fail with a `SpecError` whose message names
the file, the line (where there is one), the key path, what was expected, and the likely fix.

A new case is one small YAML file plus one row in BAD_SPECS. Catalog names in `extends:` are
found through `zoo.catalog`, so `zoo.spec(path)` is all a case needs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import zoo
from zoo.compiler.errors import SpecError, ZooError

HERE = Path(__file__).parent / "bad_specs"
LLAMA_1 = "llama/llama-1.yaml:12"  # where the catalog's `head_dim: ${div:${..dim},${.n_heads}}` is written

# file -> fragments that must all appear in str(SpecError)
BAD_SPECS: dict[str, list[str]] = {
    # ---------------------------------------------------------------- YAML itself
    "yaml_bad_indent.yaml": ["yaml_bad_indent.yaml:4", "not valid YAML", "mapping values are not allowed here"],
    "yaml_tab.yaml": ["yaml_tab.yaml:3", "not valid YAML", "'\\t'", "indent with spaces, not tabs"],
    "yaml_unclosed_bracket.yaml": ["yaml_unclosed_bracket.yaml:2", "not valid YAML", "expected ',' or ']'"],
    "yaml_unclosed_quote.yaml": ["yaml_unclosed_quote.yaml:", "not valid YAML", "end of stream",
                                 "while scanning a quoted scalar at line 2"],
    "yaml_unquoted_interpolation.yaml": ["yaml_unquoted_interpolation.yaml:2", "not valid YAML",
                                         'quote interpolations: "${...}"'],
    "yaml_python_tag.yaml": ["yaml_python_tag.yaml:3", "description",
                             "tag tag:yaml.org,2002:python/object/apply:os.system is not allowed"],
    "yaml_binary_value.yaml": ["yaml_binary_value.yaml:2", "description", "unsupported YAML value of type bytes"],
    "yaml_alias_bomb.yaml": ["yaml_alias_bomb.yaml:", "expands to more than 10,000 values (aliases?)"],
    "yaml_recursive_alias.yaml": ["yaml_recursive_alias.yaml:", "arch.layers.0", "recursive structure"],
    "yaml_merge_key.yaml": ["yaml_merge_key.yaml:3", "arch", "merge keys (<<) are not supported", "extends"],
    "duplicate_key.yaml": ["duplicate_key.yaml:3", "arch: duplicate key"],
    "duplicate_nested_key.yaml": ["duplicate_nested_key.yaml:5", "arch.attention.n_heads: duplicate key"],
    "not_a_mapping_list.yaml": ["not_a_mapping_list.yaml:1", "a spec is a mapping of keys, got list"],
    "not_a_mapping_scalar.yaml": ["not_a_mapping_scalar.yaml:1", "a spec is a mapping of keys, got str"],
    # ---------------------------------------------------------------- unknown keys (did you mean)
    "unknown_top_key.yaml": ["unknown_top_key.yaml:2", "arhc: unknown key", "expected one of arch,",
                             "did you mean 'arch'?"],
    "unknown_key_n_head.yaml": ["unknown_key_n_head.yaml:4", "arch.attention.n_head: unknown key",
                                "did you mean 'n_heads'"],
    "unknown_key_thetta.yaml": ["unknown_key_thetta.yaml:5", "arch.attention.rope.thetta: unknown key",
                                "expected one of fraction, kind, scaling, theta", "did you mean 'theta'?"],
    "unknown_key_hiden_dim.yaml": ["unknown_key_hiden_dim.yaml:4", "arch.ffn.hiden_dim: unknown key",
                                   "did you mean 'hidden_dim'?"],
    "unknown_key_layer_override.yaml": ["unknown_key_layer_override.yaml:5", "arch.layers.0-1.fnn: unknown key",
                                        "expected one of attention, ffn, norm", "did you mean 'ffn'?"],
    "unknown_key_revison.yaml": ["unknown_key_revison.yaml:4", "weights.revison: unknown key",
                                 "did you mean 'revision'?"],
    # ---------------------------------------------------------------- unknown kinds
    "unknown_kind_swigl.yaml": ["unknown_kind_swigl.yaml:3", "arch.ffn.kind: unknown kind 'swigl'",
                                "expected one of swiglu, geglu, gelu-mlp", "did you mean 'swiglu'?"],
    "unknown_kind_rms_norm.yaml": ["unknown_kind_rms_norm.yaml:3", "arch.norm.kind: unknown kind 'rms_norm'",
                                   "did you mean 'rmsnorm'?"],
    "unknown_kind_decodr.yaml": ["unknown_kind_decodr.yaml:2", "arch.kind: unknown kind 'decodr'",
                                 "did you mean 'decoder'?"],
    "unknown_kind_rope_scaling.yaml": ["unknown_kind_rope_scaling.yaml:4", "arch.attention.rope.scaling.kind",
                                       "unknown kind 'liner'", "did you mean 'linear'?"],
    "unknown_tokenizer_kind.yaml": ["unknown_tokenizer_kind.yaml:3", "tokenizer.kind",
                                    "'sentencepiece', 'bpe' or 'tekken'", "did you mean 'sentencepiece'?"],
    # ---------------------------------------------------------------- wrong types and ranges
    "type_dim_string.yaml": ["type_dim_string.yaml:3", "arch.dim: input should be a valid integer", "got 'big'",
                             # the catalog's head_dim interpolation also fails on it, and says why
                             LLAMA_1, "div: expected a number, got 'big'"],
    "type_dim_negative.yaml": ["type_dim_negative.yaml:4", "arch.dim: input should be greater than 0, got -64"],
    "type_zero_heads.yaml": ["type_zero_heads.yaml:3", "arch.attention.n_heads: input should be greater than 0",
                             "got 0", "div: division of 4096 by zero"],
    "type_float_layers.yaml": ["type_float_layers.yaml:3", "arch.n_layers: expected an integer",
                               "fractional part", "got 2.5"],
    "type_bool_string.yaml": ["type_bool_string.yaml:3", "arch.tie_embeddings: input should be a valid boolean",
                              "got 'sometimes'"],
    # -1e-5 is read as a float (plain YAML 1.1 would make it a string), so the complaint is its sign
    "type_eps_negative.yaml": ["type_eps_negative.yaml:3", "arch.norm.eps: input should be greater than 0",
                               "got -1e-05"],
    "sliding_window_zero.yaml": ["sliding_window_zero.yaml:4",
                                 "arch.attention.sliding_window: input should be greater than 0, got 0"],
    "rope_scaling_negative.yaml": ["rope_scaling_negative.yaml:5",
                                   "arch.attention.rope.scaling.factor: input should be greater than 0, got -2.0"],
    "schema_version_wrong.yaml": ["schema_version_wrong.yaml:1", "schema_version: input should be 1, got 2"],
    "missing_dim.yaml": ["missing_dim.yaml:2", "arch.dim: required key is missing"],
    "missing_arch.yaml": ["missing_arch.yaml", "arch: required key is missing"],
    # ---------------------------------------------------------------- consistency between keys
    "kv_heads_not_dividing.yaml": ["kv_heads_not_dividing.yaml:4", "arch.attention.n_kv_heads",
                                   "n_kv_heads (5) must divide n_heads (32)"],
    "kv_heads_exceed_heads.yaml": ["kv_heads_exceed_heads.yaml:4", "arch.attention.n_kv_heads",
                                   "n_kv_heads (64) must divide n_heads (32)"],
    "head_dim_odd_rope.yaml": ["head_dim_odd_rope.yaml:5", "arch.attention.head_dim",
                               "RoPE needs an even head_dim, got 9"],
    "ffn_without_size.yaml": ["ffn_without_size.yaml:4", "arch.ffn: needs hidden_dim, or multiple_of"],
    "dim_not_divisible_by_heads.yaml": ["dim_not_divisible_by_heads.yaml:7", "arch.attention",
                                        "dim (100) is not divisible by n_heads (8); give head_dim"],
    "dim_not_divisible_interpolated.yaml": ["dim_not_divisible_interpolated.yaml", LLAMA_1,
                                            "arch.attention.head_dim: interpolation '${div:${..dim},${.n_heads}}'",
                                            "div: 4100 is not divisible by 32"],
    "layer_range_past_end.yaml": ["layer_range_past_end.yaml:5", "arch.layers.2-4",
                                  "layer 4 is past the last layer (3)"],
    "layer_ranges_overlap.yaml": ["layer_ranges_overlap.yaml:5", "arch.layers.3-5",
                                  "layer 3 is also in range '0-3'"],
    "layer_range_backwards.yaml": ["layer_range_backwards.yaml:4", "arch.layers.3-1",
                                   "layer range '3-1' runs backwards"],
    "layer_range_malformed.yaml": ["layer_range_malformed.yaml:4", "arch.layers.a-b",
                                   "layer range 'a-b' is not of the form 'A-B', 'A', 'A-B:step' or 'A-B,C'"],
    "several_problems.yaml": ["3 problems", "several_problems.yaml:3", "arch.n_layers: input should be greater than 0",
                              "several_problems.yaml:4", "did you mean 'n_heads'", "several_problems.yaml:5",
                              "arch.ffn.activation", "got 'gelu_fast'"],
    # ---------------------------------------------------------------- mixture of experts
    "moe_top_k_exceeds_experts.yaml": ["moe_top_k_exceeds_experts.yaml:4", "arch.ffn.top_k",
                                       "top_k (9) must be at most n_experts (8)"],
    "moe_expert_bias.yaml": ["moe_expert_bias.yaml:4", "arch.ffn.expert.bias",
                             "stacked experts have no biases; set bias: false"],
    "moe_layer_range_missing_experts.yaml": ["moe_layer_range_missing_experts.yaml:4",
                                             "arch.layers.0-3.ffn.n_experts: required key is missing"],
    "moe_nested_expert.yaml": ["moe_nested_expert.yaml:4", "arch.ffn.expert.kind: unknown kind 'moe'",
                               "expected one of swiglu, geglu, gelu-mlp"],
    "moe_router_unknown_key.yaml": ["moe_router_unknown_key.yaml:4", "arch.ffn.router.aux_loss_coeff: unknown key",
                                    "did you mean 'aux_loss_coef'?"],
    # ---------------------------------------------------------------- extends
    "extends_missing.yaml": ["extends_missing.yaml:1", "extends: no spec named 'llama/llama-2-7bb'",
                             "did you mean 'llama-2-7b'"],
    "extends_missing_file.yaml": ["extends_missing_file.yaml:1", "extends: no spec named './no-such-parent.yaml'"],
    "extends_cycle_a.yaml": ["extends_cycle_b.yaml:2", "extends cycle: extends_cycle_a.yaml -> "
                             "extends_cycle_b.yaml -> extends_cycle_a.yaml"],
    "extends_cycle_b.yaml": ["extends_cycle_a.yaml:1", "extends cycle: extends_cycle_b.yaml -> "
                             "extends_cycle_a.yaml -> extends_cycle_b.yaml"],
    "extends_not_string.yaml": ["extends_not_string.yaml:1", "extends: must be a spec name or path",
                                "expected a string"],
    "extends_family_without_sizes.yaml": ["extends_family_without_sizes.yaml", "3 problems",
                                          "arch.dim: required key is missing",
                                          "arch.n_layers: required key is missing",
                                          "Interpolation key '..dim' not found"],
    "abstract_family.yaml": ["abstract_family.yaml:1", "abstract: is a family file, not a loadable model"],
    # ---------------------------------------------------------------- interpolation
    "interpolation_missing_key.yaml": ["interpolation_missing_key.yaml:3", "arch.max_seq_len",
                                       "interpolation '${arch.max_seq_lenn}' failed",
                                       "did you mean 'arch.max_seq_len'?"],
    "interpolation_div_by_zero.yaml": ["interpolation_div_by_zero.yaml:4", "arch.attention.head_dim",
                                       "interpolation '${div:${..dim},0}' failed", "division of 4096 by zero"],
    "interpolation_unknown_resolver.yaml": ["interpolation_unknown_resolver.yaml:3", "description",
                                            "unknown resolver 'oc.env'", "expected one of div, mul, add, sub"],
    "interpolation_cycle.yaml": ["interpolation_cycle.yaml:3", "interpolation_cycle.yaml:4", "arch.dim",
                                 "arch.max_seq_len", "Recursive interpolation detected"],
    "mandatory_value_missing.yaml": ["mandatory_value_missing.yaml:3", "arch.vocab_size", "value is missing (???)"],
    # ---------------------------------------------------------------- dotted overrides (see OVERRIDES)
    "override_no_equals.yaml": ["override_no_equals.yaml", "<override>", "arch.n_layers",
                                "an override is KEY.PATH=VALUE"],
    "override_unknown_key.yaml": ["override_unknown_key.yaml", "<override>: arch.n_layer: unknown key",
                                  "did you mean 'n_layers'"],
    "override_through_scalar.yaml": ["override_through_scalar.yaml", "<override>: arch.dim: is an int (4096)",
                                     "arch.dim.size cannot be set below it", "expected a mapping"],
    "override_bad_value.yaml": ["override_bad_value.yaml", "<override>: arch.n_layers",
                                "input should be a valid integer", "got 'two'"],
}

# cases whose file is fine but whose overrides are not
OVERRIDES: dict[str, list[str]] = {
    "override_no_equals.yaml": ["arch.n_layers"],
    "override_unknown_key.yaml": ["arch.n_layer=2"],
    "override_through_scalar.yaml": ["arch.dim.size=64"],
    "override_bad_value.yaml": ["arch.n_layers=two"],
}
# caught by the compiler (schema, then IR checks): loaded with zoo.compile, not just zoo.spec
VIA_COMPILE = {"head_dim_odd_rope.yaml"}

NOISE = ("Traceback", "errors.pydantic.dev", "For further information", "pydantic_core", "full_key:",
         "object_type=", "ValidationError", "omegaconf.errors", "yaml.scanner", "Value error,")


def _load(name: str) -> None:
    path = HERE / name
    if name in VIA_COMPILE:
        zoo.compile(path, OVERRIDES.get(name, ()))
    else:
        zoo.spec(path, OVERRIDES.get(name, ()))


def test_corpus_is_complete() -> None:
    files = {p.name for p in HERE.glob("*.yaml")}
    assert files == set(BAD_SPECS), f"untabled: {files - set(BAD_SPECS)}; missing: {set(BAD_SPECS) - files}"
    assert len(files) >= 35
    assert set(OVERRIDES) <= files and VIA_COMPILE <= files


@pytest.mark.parametrize("name", sorted(BAD_SPECS))
def test_bad_spec(name: str) -> None:
    with pytest.raises(SpecError) as info:
        _load(name)
    err = info.value
    assert type(err) is SpecError and isinstance(err, ZooError) and isinstance(err, ValueError)
    assert err.problems and err.source and Path(err.source).name == name
    text = str(err)
    missing = [f for f in BAD_SPECS[name] if f not in text]
    assert not missing, f"{name}: {missing} not in:\n{text}"
    assert not [n for n in NOISE if n in text], text
    # raised on purpose, not re-raised from a library: no chained traceback to read through
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)


@pytest.mark.parametrize("name", sorted(BAD_SPECS))
def test_bad_spec_never_reaches_torch(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import zoo.model

    def no_lowering(*args: object, **kwargs: object) -> None:
        raise AssertionError("an invalid spec reached lowering")

    monkeypatch.setattr(zoo.model, "lower", no_lowering)
    with pytest.raises(SpecError):
        zoo.build(HERE / name, OVERRIDES.get(name, ()), init="meta")


def test_cli_reports_a_bad_spec_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    from zoo.cli import main

    assert main(["show", str(HERE / "unknown_key_n_head.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid spec") and "did you mean 'n_heads'" in err and "Traceback" not in err
    assert main(["compile", str(HERE / "override_unknown_key.yaml"), "arch.n_layer=2"]) == 2
    assert "<override>: arch.n_layer: unknown key" in capsys.readouterr().err


def test_spec_from_text_reports_its_source() -> None:
    from zoo.compiler.frontend import spec_from_text

    with pytest.raises(SpecError) as info:
        spec_from_text("name: x\narch:\n  kind: decoder\n  ffn: {kind: swigl}\n", source="my-spec")
    text = str(info.value)
    assert "my-spec:4: arch.ffn.kind: unknown kind 'swigl'" in text and "did you mean 'swiglu'" in text
    assert "my-spec:2: arch.dim: required key is missing" in text  # every problem at once
