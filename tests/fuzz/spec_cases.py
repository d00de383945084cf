"""Named hostile spec inputs, shared by the tests and bench/hostile.py: known-bad (field, YAML
value) pairs and valid alternatives, hostile spec texts and files, hostile overrides."""

from __future__ import annotations

from pathlib import Path

from .builders import EXTENDS_SPEC, base_spec, dump_yaml

# ---------------------------------------------------------------------------------- hostile YAML text


def alias_bomb(levels: int = 9, fanout: int = 9, flow: bool = False) -> str:
    """Billion laughs: `levels` anchors each listing the previous one `fanout` times."""
    if flow:  # one line, for an override value
        parts = ["&a0 [x" + ",x" * (fanout - 1) + "]"]
        for i in range(1, levels):
            parts.append(f"&a{i} [" + ",".join([f"*a{i - 1}"] * fanout) + "]")
        return "[" + ", ".join(parts) + "]"
    lines = ["a0: &a0 [" + ", ".join(["lol"] * fanout) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fanout) + "]")
    return "\n".join(lines) + "\n"


def deep_flow(depth: int) -> str:
    return "[" * depth + "]" * depth


def deep_mapping(depth: int) -> str:
    return "".join("  " * i + f"k{i}:\n" for i in range(depth)) + "  " * depth + "v\n"


# ---------------------------------------------------------------------------------- known-bad values

#: YAML snippets no positive-integer field may take
BAD_INTS = ["true", "false", "0", "-1", "-5", "1.5", "abc", "''", "[4]", "{x: 1}", ".inf", "-.inf", ".nan", "1e400",
            "null", "9223372036854775808", "18446744073709551617"]
#: sizes the contract calls huge (refused: `dim: 10**12`)
HUGE_INTS = ["1000000000000", "100000000000000000", "4611686018427387904"]
#: YAML snippets no positive, finite float field may take
BAD_FLOATS = [".inf", "-.inf", ".nan", ".NaN", "1e400", "-1e400", "0", "-1", "-1e-5", "true", "abc", "[1.0]", "{x: 1}",
              "null"]
#: token ids that are wrong in a vocabulary of 128
BAD_TOKEN_IDS = ["-5", "-2", "128", "129", "1000000", "true", "1.5", "abc", "[1]", "9223372036854775808"]
BAD_BOOLS = ["2", "-1", "abc", "[true]", "{x: 1}", "0.5"]

INT_FIELDS = ["arch.dim", "arch.n_layers", "arch.vocab_size", "arch.max_seq_len", "arch.attention.n_heads",
              "arch.attention.n_kv_heads", "arch.attention.head_dim", "arch.ffn.hidden_dim",
              "arch.attention.sliding_window"]
SIZE_FIELDS = ["arch.dim", "arch.vocab_size", "arch.ffn.hidden_dim", "arch.n_layers"]
FLOAT_FIELDS = ["arch.norm.eps", "arch.attention.rope.theta"]
TOKEN_FIELDS = ["tokenizer.bos_id", "tokenizer.eos_id", "tokenizer.pad_id"]
BOOL_FIELDS = ["arch.tie_embeddings", "arch.attention.qkv_bias", "arch.attention.o_bias", "arch.ffn.bias"]
KIND_FIELDS = {"arch.kind": ["nope", "5", "null", "[decoder]"], "arch.ffn.kind": ["nope", "7", "{}"],
               "arch.norm.kind": ["batchnorm", "1"], "arch.attention.rope.kind": ["alibi-nope"],
               "tokenizer.kind": ["nope", "7"], "arch.attention.kind": ["flash-nope"]}
#: other known-bad (field, YAML) pairs: structure, unknown keys, interpolations, ranges
OTHER_BAD = [
    ("arch", "5"), ("arch", "[]"), ("arch", "null"), ("arch.attention", "5"), ("arch.attention", "null"),
    ("arch.ffn", "null"), ("arch.ffn", "[1, 2]"), ("arch.norm", "'rms'"), ("arch.attention.rope", "7"),
    ("arch.dimm", "64"), ("arch.attention.nheads", "4"), ("archh", "{}"), ("arch.ffn.hidden", "96"),
    ("name", "[1, 2]"), ("name", "{a: 1}"), ("name", "5"), ("description", "[1]"), ("tokenizer", "5"),
    ("tokenizer.file", "[a]"), ("tokenizer.infill", "{prefix_id: -1, suffix_id: 2, middle_id: 3, eot_id: 4}"),
    ("tokenizer.infill", "{prefix_id: 1000000, suffix_id: 2, middle_id: 3, eot_id: 4}"),
    ("arch.attention.n_kv_heads", "3"), ("arch.attention.head_dim", "7"), ("arch.attention.n_heads", "5"),
    ("arch.attention.n_heads", "128"),
    # the LLaMA sizing rule (no hidden_dim): 1e-30 gives an FFN of 0 units
    ("arch.ffn", "{kind: swiglu, multiple_of: 256, dim_multiplier: 1e-30}"),
    ("arch.ffn", "{kind: swiglu, multiple_of: 1, dim_multiplier: 1e-30}"),
    ("arch.ffn", "{kind: swiglu, multiple_of: 32, dim_multiplier: .nan}"),
    ("arch.ffn", "{kind: swiglu, multiple_of: 32, dim_multiplier: .inf}"),
    ("arch.ffn", "{kind: swiglu, multiple_of: 32, dim_multiplier: -1}"),
    ("arch.ffn", "{kind: swiglu, multiple_of: 32, dim_multiplier: 1e300}"),
    ("arch.ffn", "{kind: swiglu, multiple_of: 0}"), ("arch.ffn", "{kind: swiglu, multiple_of: -256}"),
    ("arch.ffn", "{kind: swiglu, multiple_of: true}"),
    ("arch.ffn", "{kind: swiglu, hidden_dim: null, multiple_of: null}"),
    ("arch.layers", "{'0-99999': {attention: {n_heads: 2}}}"), ("arch.layers", "{'5': {ffn: {hidden_dim: 8}}}"),
    ("arch.layers", "{'1-0': {ffn: {hidden_dim: 8}}}"), ("arch.layers", "{'abc': {ffn: {hidden_dim: 8}}}"),
    ("arch.layers", "{'0': 5}"), ("arch.layers", "[1, 2]"), ("arch.heads", "{kind: multi_token, n_future: 0}"),
    ("arch.heads", "{kind: multi_token, n_future: -3}"), ("arch.heads", "{kind: multi_token, n_future: 1000}"),
    ("arch.dim", "'${oc.env:HOME}'"), ("arch.dim", "'${div:64,0}'"), ("arch.dim", "'${div:64,3}'"),
    ("arch.dim", "'${arch.dim}'"), ("arch.dim", "'${nonexistent.key}'"), ("arch.dim", "'${mul:1e300,1e300}'"),
    ("arch.dim", "'${sub:0,64}'"), ("arch.dim", "'${eval:1}'"), ("arch.dim", "'${mul:abc,2}'"),
    ("arch.norm.eps", "'${div:1,0}'"), ("schema_version", "2"), ("schema_version", "abc"),
]

#: valid (field, YAML) alternatives: each must be accepted
GOOD_VALUES = [
    ("arch.dim", "128"), ("arch.dim", "32"), ("arch.n_layers", "1"), ("arch.n_layers", "4"), ("arch.vocab_size", "64"),
    ("arch.vocab_size", "1000"), ("arch.max_seq_len", "16"), ("arch.max_seq_len", "4096"),
    ("arch.attention.n_kv_heads", "2"), ("arch.attention.n_kv_heads", "1"), ("arch.attention.head_dim", "8"),
    ("arch.attention.sliding_window", "16"), ("arch.attention.sliding_window", "1"), ("arch.ffn.hidden_dim", "1"),
    ("arch.norm.eps", "1e-6"), ("arch.norm.eps", "0.1"), ("arch.attention.rope.theta", "500000.0"),
    ("arch.attention.qkv_bias", "true"), ("arch.tie_embeddings", "true"), ("tokenizer.bos_id", "0"),
    ("tokenizer.eos_id", "127"), ("tokenizer.pad_id", "null"), ("tokenizer.bos_id", "null"),
    ("description", "'naïve café 日本語 🙂'"), ("arch.attention.head_dim", "'${div:${.n_heads},2}'"),
    ("arch.ffn", "{kind: swiglu, multiple_of: 32}"),
    ("arch.ffn", "{kind: swiglu, multiple_of: 32, dim_multiplier: 1.3}"),
    ("arch.ffn", "{kind: geglu, hidden_dim: 40}"), ("arch.norm", "{kind: layernorm, eps: 1.0e-5}"),
    ("arch.layers", "{'0': {ffn: {kind: swiglu, hidden_dim: 32}}}"),
]


def bad_pairs() -> list[tuple[str, str]]:
    """Every known-bad (field, YAML value) pair."""
    optional = ("arch.attention.n_kv_heads", "arch.attention.head_dim", "arch.attention.sliding_window",
                "arch.ffn.hidden_dim")  # null is valid there (hidden_dim: the LLaMA rule, when the ffn has one)
    out = [(f, v) for f in INT_FIELDS for v in BAD_INTS if not (v == "null" and f in optional)]
    out += [(f, v) for f in SIZE_FIELDS for v in HUGE_INTS]
    out += [(f, v) for f in FLOAT_FIELDS for v in BAD_FLOATS]
    out += [(f, v) for f in TOKEN_FIELDS for v in BAD_TOKEN_IDS]
    out += [(f, v) for f in BOOL_FIELDS for v in BAD_BOOLS]
    out += [(f, v) for f, vs in KIND_FIELDS.items() for v in vs]
    out += OTHER_BAD
    return out


BAD_PAIRS = bad_pairs()

# ---------------------------------------------------------------------------------- hostile spec texts

HOSTILE_SPEC_TEXTS: dict[str, str | bytes] = {
    "NUL bytes": dump_yaml(base_spec()).replace("fuzz-tiny", "fuzz\x00tiny"),
    "a NUL byte in a key": dump_yaml(base_spec()).replace("family:", "fam\x00ily:"),
    "invalid UTF-8": dump_yaml(base_spec()).encode().replace(b"fuzz-tiny", b"fuzz\xff\xfetiny"),
    "a lone surrogate": dump_yaml(base_spec()).replace("fuzz-tiny", "fuzz\ud800tiny"),
    "extends /proc/self/environ": "extends: /proc/self/environ\nname: x\n",
    "extends /proc/self/cmdline": "extends: /proc/self/cmdline\nname: x\n",
    "extends /dev/zero": "extends: /dev/zero\nname: x\n",
    "extends /dev/urandom": "extends: /dev/urandom\nname: x\n",
    "extends /etc/passwd": "extends: /etc/passwd\nname: x\n",
    "extends ../../../../../../etc/passwd": "extends: ../../../../../../etc/passwd\nname: x\n",
    "extends a folder": "extends: /etc\nname: x\n",
    "extends itself": "extends: ./hostile.yaml\nname: x\n",
    "extends a number": "extends: 5\nname: x\n",
    "extends a list": "extends: [llama/llama-2-7b]\nname: x\n",
    "400-deep nested mappings": "name: x\ndescription:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(400))
                                + "  " * 401 + "v\n",
    "400-deep flow sequences": "name: x\ndescription: " + deep_flow(400) + "\n",
    "100000-deep flow sequences": "name: x\ndescription: " + deep_flow(100000) + "\n",
    "deep mapping document": deep_mapping(3000),
    "billion laughs": alias_bomb(9, 9) + "name: x\n",
    "billion laughs as a description": EXTENDS_SPEC + "description: " + alias_bomb(9, 9, flow=True) + "\n",
    "a recursive alias": "name: &a [*a]\n",
    "100000 keys": "name: x\n" + "".join(f"k{i}: {i}\n" for i in range(100000)),
    "a 5000-digit int": EXTENDS_SPEC.replace("dim: 64", "dim: " + "9" * 5000),
    "a python/object tag": "name: !!python/object/apply:os.system ['touch pwned-spec']\n",
    "a python/name tag": "name: !!python/name:os.system\n",
    "a binary tag": "name: !!binary aGVsbG8=\n",
    "a set tag": "name: !!set {a, b}\n",
    "a merge key": "base: &b {dim: 64}\narch:\n  <<: *b\nname: x\n",
    "duplicate keys": EXTENDS_SPEC + "name: again\n",
    "two documents": EXTENDS_SPEC + "---\nname: second\n",
    "a scalar document": "5\n",
    "a list document": "- name: x\n",
    "tabs": "name: x\narch:\n\tdim: 64\n",
    "oc.env interpolation": EXTENDS_SPEC + "description: ${oc.env:HOME}\n",
    "an interpolation cycle": EXTENDS_SPEC.replace("dim: 64", "dim: ${arch.n_layers}").replace(
        "n_layers: 2", "n_layers: ${arch.dim}"),
    "deeply nested resolver calls": EXTENDS_SPEC.replace("dim: 64", "dim: " + "${add:1," * 300 + "1" + "}" * 300),
    "n_layers true": EXTENDS_SPEC.replace("n_layers: 2", "n_layers: true"),
    "eps .inf": EXTENDS_SPEC.replace("vocab_size: 128}", "vocab_size: 128, norm: {eps: .inf}}"),
    "theta .nan": EXTENDS_SPEC.replace("n_heads: 4}", "n_heads: 4, rope: {theta: .nan}}"),
    "dim_multiplier 1e-30": EXTENDS_SPEC.replace("ffn: {hidden_dim: 96}",
                                                 "ffn: {hidden_dim: null, dim_multiplier: 1e-30}"),
    "dim 10**12": EXTENDS_SPEC.replace("dim: 64", "dim: 1000000000000"),
    "bos_id -5": EXTENDS_SPEC + "tokenizer: {bos_id: -5}\n",
    "eos_id == vocab_size": EXTENDS_SPEC + "tokenizer: {eos_id: 128}\n",
    "sliding_window 0": EXTENDS_SPEC.replace("n_heads: 4}", "n_heads: 4, sliding_window: 0}"),
    "sliding_window -5": EXTENDS_SPEC.replace("n_heads: 4}", "n_heads: 4, sliding_window: -5}"),
}

#: a 10 MB spec: bounded time, whatever the answer
TEN_MB_SPEC = EXTENDS_SPEC + "description: '" + "x" * 10_000_000 + "'\n"


def write_spec_file(path: Path, text: str | bytes) -> Path:
    """`text` written as is (bytes) or as UTF-8 that keeps lone surrogates."""
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    return path


def sparse_spec_file(path: Path) -> Path:
    """A 2 GB spec file (sparse: no disk used): a reader must refuse it without reading it."""
    with open(path, "wb") as fh:
        fh.write(b"name: x\ndescription: ")
        fh.truncate(2 << 30)
    return path


def extends_cycle(folder: Path) -> Path:
    """a.yaml extends b.yaml, which extends a.yaml."""
    (folder / "a.yaml").write_text("extends: ./b.yaml\nname: a\n")
    (folder / "b.yaml").write_text("extends: ./a.yaml\nname: b\n")
    return folder / "a.yaml"


def extends_chain(folder: Path, n: int) -> Path:
    """s0.yaml (a whole spec) … s{n-1}.yaml, each extending the one before; returns the last."""
    (folder / "s0.yaml").write_text(dump_yaml(base_spec()))
    for i in range(1, n):
        (folder / f"s{i}.yaml").write_text(f"extends: ./s{i - 1}.yaml\ndescription: step {i}\n")
    return folder / f"s{n - 1}.yaml"


# ---------------------------------------------------------------------------------- overrides

HOSTILE_OVERRIDES = {
    "billion laughs as a value": "description=" + alias_bomb(9, 9, flow=True),
    "5000-deep flow value": "arch.dim=" + deep_flow(5000),
    "a 3000-segment key": "a" + ".a" * 3000 + "=1",
    "a 5000-digit int": "arch.ffn.hidden_dim=" + "9" * 5000,
    "n_layers=true": "arch.n_layers=true",
    "sliding_window=0": "arch.attention.sliding_window=0",
    "sliding_window=-5": "arch.attention.sliding_window=-5",
    "oc.env": "description=${oc.env:HOME}",
    "a NUL in the value": "arch.dim=6\x004",
}

MALFORMED_OVERRIDES = [
    "", "=", "=5", "arch.dim", "arch..dim=64", ".arch.dim=64", "arch.dim.=64", "arch. .dim=3", "arch.dim.x=5",
    "arch.n_layers.0=3", "name.first=x", "arch.attention.n_heads.x.y=1", "arch.dim=" + alias_bomb(9, 9, flow=True),
    "arch.dim=" + deep_flow(5000), "description=" + deep_flow(400), "arch=" + alias_bomb(8, 10, flow=True),
    "a" + ".a" * 3000 + "=1", "arch.dim\x00=64", "arch.dim=6\x004", "arch.dim=${oc.env:HOME}", "arch.dim=${div:1,0}",
    "arch.dim=${arch.dim}", "arch.n_layers=true", "arch.n_layers=100000000000000", "arch.norm.eps=.inf",
    "arch.attention.rope.theta=.nan", "tokenizer.bos_id=-5", "arch.attention.sliding_window=0",
    "arch.attention.sliding_window=-5", "arch.dim=1000000000000", "arch.ffn.hidden_dim=" + "9" * 5000,
    "arch.layers.0-99999.ffn.hidden_dim=8", "arch.layers.5.ffn.hidden_dim=8", "schema_version=2",
]
