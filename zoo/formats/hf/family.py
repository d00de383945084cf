"""transformers families as data: one YAML file per `model_type` (specs/formats/transformers/,
and `formats/transformers/` under every ZOO_PATH folder) says how its config.json maps to a zoo
spec, and back. No family has Python of its own; conventions shared by several (RoPE,
activations, sliding windows) are the named converters of converters.py.

A family file:

    model_type: qwen2
    architecture: Qwen2ForCausalLM
    format: hf-llama                  # the key map of its tensors (specs/formats/)
    spec: {arch: {...}}               # what every config of the family shares (kinds, fixed fields)
    keys:                             # config key -> spec path (or paths), optionally a default
      hidden_size: arch.dim           #   used when the key is absent or null, and a value table
      attention_bias: {to: [arch.attention.qkv_bias, arch.attention.o_bias], default: false}
    convert: {rope: {}, activation: {at: arch.ffn}, windows: {style: qwen}}
    require: {pretraining_tp: 1}      # keys whose other values change the math zoo does not model
    absent: {sliding_window: 4096}    # what the class assumes for a key a config lacks, where that
                                      #   differs from null (Gemma-2's soft-caps, window, scalar)
    ignore: [resid_pdrop]             # keys that do not change the math (dropouts ...)

Reading refuses a config key the file does not account for (nor `_common.yaml`), naming it: a
field that changes the math must never be dropped silently. Writing fills every key from the
spec, and a config is only written when reading it back gives the spec's exact runtime records
(so a spec the family cannot express gets no config.json).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from pathlib import Path
from typing import Any, Mapping

import yaml

from ...catalog import search_roots
from ...compiler.schema import ModelSpec, TokenizerSpec
from ..transforms import READ_ERRORS, FormatError, unreadable
from .converters import CONVERTERS, get_path, set_path

_MISSING = object()
_FILE_KEYS = {"model_type", "architecture", "format", "formats", "spec", "keys", "convert", "require", "ignore",
              "description", "absent"}
#: handled by the reader itself: token ids go to the tokenizer section, names and dtype are bookkeeping
TOKEN_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id")


@dataclasses.dataclass(frozen=True)
class KeyRule:
    key: str
    to: tuple[str, ...]
    default: Any = _MISSING
    values: tuple[tuple[Any, Any], ...] = ()  # (config value, spec value)


@dataclasses.dataclass(frozen=True)
class Family:
    model_type: str
    architecture: str
    format: str
    spec: Mapping[str, Any]
    keys: tuple[KeyRule, ...]
    convert: tuple[tuple[str, Mapping[str, Any]], ...]
    require: Mapping[str, Any]
    ignore: frozenset[str]
    source: str
    formats: tuple[str, ...] = ()  # other key maps of the same class (fused/per-expert layouts)
    absent: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the class's values for missing keys

    def known_keys(self) -> set[str]:
        out = {r.key for r in self.keys} | set(self.require) | set(self.ignore) | set(TOKEN_KEYS)
        for name, params in self.convert:
            out |= CONVERTERS[name]().keys(params)
        return out


def transformers_roots() -> list[Path]:
    return [root / "formats" / "transformers" for root in search_roots()]


@functools.lru_cache(maxsize=8)
def _families(roots: tuple[Path, ...]) -> tuple[dict[str, Family], frozenset[str]]:
    found: dict[str, Family] = {}
    common: set[str] = set()
    for root in roots:
        for path in sorted(root.glob("*.yaml")) if root.is_dir() else []:
            data = _read_yaml(path)
            if path.stem == "_common":
                common |= set(data.get("ignore", []))
                continue
            fam = parse_family(data, str(path))
            found.setdefault(fam.model_type, fam)  # the first root wins: a user's file over the package's
    return found, frozenset(common)


def families() -> dict[str, Family]:
    """Every family by model_type (a ZOO_PATH folder's before the package's)."""
    return _families(tuple(transformers_roots()))[0]


def common_ignored() -> frozenset[str]:
    return _families(tuple(transformers_roots()))[1]


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise FormatError(f"{path}: not a readable YAML file ({e})") from None
    if not isinstance(data, dict):
        raise FormatError(f"{path}: a transformers family file is a mapping")
    return data


def parse_family(data: Mapping[str, Any], source: str = "<family>") -> Family:
    """A Family from its YAML document; unknown keys and converters are errors."""
    unknown = set(data) - _FILE_KEYS
    if unknown:
        raise FormatError(f"{source}: unknown keys {sorted(unknown)} (a family file has {sorted(_FILE_KEYS)})")
    for key in ("model_type", "architecture", "format"):
        if not isinstance(data.get(key), str):
            raise FormatError(f"{source}: `{key}` must be a string")
    rules = []
    for key, rule in (data.get("keys") or {}).items():
        if isinstance(rule, str):
            rule = {"to": rule}
        if not isinstance(rule, dict) or set(rule) - {"to", "default", "values"} or "to" not in rule:
            raise FormatError(f"{source}: keys.{key}: a spec path, or {{to:, default:, values:}}")
        to = (rule["to"],) if isinstance(rule["to"], str) else tuple(rule["to"])
        rules.append(KeyRule(str(key), to, rule.get("default", _MISSING), tuple((rule.get("values") or {}).items())))
    if not isinstance(data.get("absent") or {}, dict):
        raise FormatError(f"{source}: `absent` maps config keys to the values the class assumes without them")
    convert = []
    for name, params in (data.get("convert") or {}).items():
        if name not in CONVERTERS:
            raise FormatError(f"{source}: convert.{name}: no such converter (known: {', '.join(CONVERTERS)})")
        convert.append((str(name), params or {}))
    return Family(data["model_type"], data["architecture"], data["format"], data.get("spec") or {}, tuple(rules),
                  tuple(convert), data.get("require") or {}, frozenset(data.get("ignore") or ()), source,
                  tuple(data.get("formats") or ()), data.get("absent") or {})


# ------------------------------------------------------------------ reading
def read_config(cfg: Mapping[str, Any], name: str, tokenizer_file: str | None = None,
                family: Family | None = None) -> ModelSpec:
    """The zoo spec a transformers config.json describes (FormatError: an unknown model_type,
    a key the family does not account for, a required value that differs, a value the spec
    refuses)."""
    fam = family or family_of(cfg.get("model_type"))
    unknown = sorted(set(cfg) - fam.known_keys() - common_ignored())
    if unknown:
        raise FormatError(f"config.json of {name}: {fam.model_type} keys zoo does not model: {', '.join(unknown)}. "
                          "They may change the math, so the load stops; if one does not, list it under `ignore:` "
                          f"in {fam.source} (or a copy of it in a ZOO_PATH folder's formats/transformers/)")
    differ = [f"{k}={cfg[k]!r} (zoo models {want!r})" for k, want in fam.require.items()
              if k in cfg and cfg[k] != want and not (cfg[k] is None and (want is False or want in ((), [])))]
    if differ:
        raise FormatError(f"config.json of {name}: {', '.join(differ)}: zoo does not model these values")
    cfg = {**copy.deepcopy(dict(fam.absent)), **cfg}  # a missing key is the class's default, not null
    doc: dict[str, Any] = copy.deepcopy(dict(fam.spec))
    try:
        for rule in fam.keys:
            value = cfg.get(rule.key)
            if value is None:
                if rule.default is _MISSING:
                    continue
                value = rule.default
            if rule.values:
                table = dict(rule.values)
                if value not in table:
                    raise FormatError(f"config.json of {name}: {rule.key}={value!r} is not one zoo models "
                                      f"(known: {', '.join(map(repr, table))})")
                value = table[value]
            for path in rule.to:
                set_path(doc, path, copy.deepcopy(value))
        for conv, params in fam.convert:
            CONVERTERS[conv]().read(cfg, doc, params)
        tok = None
        if tokenizer_file:
            kind = "tekken" if tokenizer_file.endswith(".json") else "sentencepiece"
            tok = TokenizerSpec(kind=kind, file=tokenizer_file, bos_id=_first(cfg.get("bos_token_id")),
                                eos_id=_first(cfg.get("eos_token_id")), pad_id=_first(cfg.get("pad_token_id")))
        return ModelSpec.model_validate({"name": name, "family": fam.model_type,
                                         "description": f"imported from transformers ({name})", **doc,
                                         "tokenizer": tok})
    except FormatError:
        raise
    except READ_ERRORS as e:
        err = unreadable(f"config.json of {name}: cannot read it as a {fam.model_type} config", e)
        raise FormatError(_with_config_keys(str(err), fam)) from None


def _with_config_keys(message: str, fam: Family) -> str:
    """Spec paths in a validation message followed by the config key they come from."""
    for rule in sorted(fam.keys, key=lambda r: -max(len(p) for p in r.to)):
        for path in rule.to:
            message = message.replace(f"{path}:", f"{path} (config {rule.key}):")
    return message


def _first(v: Any) -> int | None:
    return v[0] if isinstance(v, list) and v else v


def family_of(model_type: Any) -> Family:
    fams = families()
    if not isinstance(model_type, str) or model_type not in fams:
        raise FormatError(f"transformers model_type {model_type!r} has no zoo format yet "
                          f"(known: {', '.join(sorted(fams))})")
    return fams[model_type]


# ------------------------------------------------------------------ writing
def view_of(spec: ModelSpec) -> dict[str, Any]:
    """The spec as a document with every derived value filled in: `arch.attention/ffn/norm` are
    layer 0's completed components, `layers` every layer's (what writing reads)."""
    doc = spec.model_dump(mode="python")
    a = spec.arch
    blocks = [a.block(i) for i in range(a.n_layers)]  # type: ignore[attr-defined]
    for slot in ("attention", "ffn"):
        doc["arch"][slot] = getattr(blocks[0], slot).model_dump(mode="python")
    doc["layers"] = [{"attention": b.attention.model_dump(mode="python"), "ffn": b.ffn.model_dump(mode="python"),
                      "norm": b.norm.model_dump(mode="python")} for b in blocks]
    return doc


def write_config(spec: ModelSpec, fam: Family, dtype: Any = None) -> dict[str, Any]:
    """config.json for `spec` in family `fam` (FormatError when a value has no config key)."""
    view = view_of(spec)
    cfg: dict[str, Any] = {"architectures": [fam.architecture], "model_type": fam.model_type}
    try:
        for rule in fam.keys:
            value = get_path(view, rule.to[0])
            if any(get_path(view, p) != value for p in rule.to[1:]):
                raise FormatError(f"{' and '.join(rule.to)} differ; {rule.key} sets them together")
            if rule.values:
                theirs = next((k for k, v in rule.values if v == value), _MISSING)  # spec values may be mappings
                if theirs is _MISSING:
                    raise FormatError(f"{rule.to[0]}={value!r} has no {rule.key} value")
                value = theirs
            cfg[rule.key] = value
        for conv, params in fam.convert:
            CONVERTERS[conv]().write(view, cfg, params)
    except (KeyError, TypeError, AttributeError) as e:
        raise FormatError(f"{fam.model_type} has no place for {e}") from None
    cfg.update(copy.deepcopy(dict(fam.require)))
    tok = spec.tokenizer
    cfg.update({"bos_token_id": tok.bos_id if tok else None, "eos_token_id": tok.eos_id if tok else None,
                "pad_token_id": tok.pad_id if tok else None})
    if dtype is not None:
        cfg["dtype"] = str(dtype).removeprefix("torch.")
    return cfg


def records(spec: ModelSpec) -> Any:
    """What the runtime builds `spec` from: every block's components, sizes derived."""
    return spec.arch.config(spec.arch.ir(""))


def difference(a: Any, b: Any, at: str = "") -> str | None:
    """The first path where two runtime records differ (None when equal)."""
    if a == b:
        return None
    if dataclasses.is_dataclass(a) and type(a) is type(b):
        for f in dataclasses.fields(a):
            d = difference(getattr(a, f.name), getattr(b, f.name), f"{at}.{f.name}" if at else f.name)
            if d:
                return d
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            named = _is_named(x) and _is_named(y) and x[0] == y[0]  # a module's keyword arguments: (name, value)
            d = difference(x[1], y[1], f"{at}.{x[0]}") if named else difference(x, y, f"{at}[{i}]")
            if d:
                return d
    return f"{at or 'the model'} ({a!r}, read back as {b!r})"


def _is_named(x: Any) -> bool:
    return isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str)


def express(spec: ModelSpec, fam: Family, dtype: Any = None) -> tuple[dict[str, Any] | None, str | None]:
    """(config.json, None) when `fam` expresses `spec` exactly (read back, the runtime records
    are equal), else (None, why not)."""
    try:
        cfg = write_config(spec, fam, dtype)
        back = read_config(cfg, spec.name, family=fam)
    except FormatError as e:
        return None, str(e)
    diff = difference(records(spec), records(back))
    return (None, f"{fam.architecture} config cannot express {diff}") if diff else (cfg, None)


def family_for(spec: ModelSpec) -> tuple[Family | None, str]:
    """The family whose config expresses `spec` exactly: its own (spec.family) first, then
    Llama's, then the rest; (None, why not, for its own or Llama's) when none does. One save
    asks several times (layout, config, card): the answer is kept per spec fingerprint and set
    of family files."""
    key = (spec.fingerprint(), spec.family, tuple(transformers_roots()))
    if key not in _FOUND:
        if len(_FOUND) > 64:
            _FOUND.clear()
        _FOUND[key] = _family_for(spec)
    return _FOUND[key]


_FOUND: dict[tuple[Any, ...], tuple[Family | None, str]] = {}


def _family_for(spec: ModelSpec) -> tuple[Family | None, str]:
    fams = families()
    order = [fams[t] for t in (spec.family, "llama") if t in fams]
    order += [f for t, f in sorted(fams.items()) if f not in order]
    first_why = ""
    for fam in order:
        cfg, why = express(spec, fam)
        if cfg is not None:
            return fam, ""
        first_why = first_why or f"{fam.model_type}: {why}"
    return None, first_why
