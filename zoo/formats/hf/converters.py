"""The config.json conventions that are more than a key renamed: named converters a family
mapping (specs/formats/transformers/*.yaml) lists under `convert:`, each reading some config keys
into a spec document and writing them back from a spec.

A converter is the product's own code (one per convention, shared by every family that uses it):
RoPE (both major transformers versions, aliases such as GPT-NeoX's rotary_pct), the activation
(hidden_act / hidden_activation -> a gated or plain FFN kind), sliding windows (Mistral's on every
layer, Qwen2's from max_window_layers, Gemma-2's alternating; `layer_types` where given) and the
attention scale (Gemma-2's query_pre_attn_scalar).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ...compiler.kinds.decoder import layer_ranges
from ...compiler.schema import DenseFFN, Rope
from ..transforms import FormatError

#: transformers' activation names -> the runtime's, and back (the first name wins)
ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh",
               "gelu_new": "gelu_tanh", "relu": "relu"}
HF_ACTIVATION = {ours: theirs for theirs, ours in reversed(list(ACTIVATIONS.items()))}

SLIDING, FULL = "sliding_attention", "full_attention"
Doc = dict[str, Any]


def gated_act(ffn: Any) -> str | None:
    """transformers' hidden_act for a dense FFN that a gated MLP (LlamaMLP) computes."""
    return HF_ACTIVATION.get(ffn.act) if isinstance(ffn, DenseFFN) and ffn.gated else None


def ffn_from_act(hidden_act: str, **fields: Any) -> DenseFFN:
    """The gated FFN kind computing transformers' `hidden_act`."""
    act = ACTIVATIONS.get(hidden_act)
    ffn = DenseFFN.gated_for(act, **fields) if act else None
    if ffn is None:
        raise FormatError(f"hidden_act {hidden_act!r} has no zoo FFN kind")
    return ffn


# ------------------------------------------------------------------ document paths
def get_path(doc: Mapping[str, Any], path: str) -> Any:
    """doc['a']['b'] for 'a.b' (KeyError when a part is missing)."""
    node: Any = doc
    for part in path.split("."):
        node = node[part]
    return node


def set_path(doc: Doc, path: str, value: Any) -> None:
    """doc['a']['b'] = value for 'a.b', the mappings on the way created."""
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def merge_path(doc: Doc, path: str, fields: Mapping[str, Any]) -> None:
    """The mapping at `path` updated with `fields` (created when absent)."""
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = {**(node.get(last) or {}), **fields}


# ------------------------------------------------------------------ converters
class Converter:
    """Reads `keys(params)` of a config into a spec document; writes them from a resolved view
    of a spec (`view`: the spec's document with layer 0's components, every size derived, and
    `layers`: every layer's)."""

    def keys(self, params: Mapping[str, Any]) -> set[str]:
        raise NotImplementedError

    def read(self, cfg: Mapping[str, Any], doc: Doc, params: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def write(self, view: Doc, cfg: Doc, params: Mapping[str, Any]) -> None:
        raise NotImplementedError


ROPE_KEYS = ("rope_theta", "rope_scaling", "rope_parameters", "partial_rotary_factor",
             "original_max_position_embeddings")


class RopeConverter(Converter):
    """params: `at` (the rope's path, default arch.attention.rope), `aliases` ({family key:
    transformers' usual key}, e.g. rotary_pct: partial_rotary_factor), `top_level` (scaling
    keys also written top-level, where the class reads them first: Phi-3's
    original_max_position_embeddings), `fraction_default` (the partial rotary factor the class
    assumes when a config names none, GPT-NeoX's 0.25; the factor is then always written)."""

    def keys(self, params: Mapping[str, Any]) -> set[str]:
        return set(ROPE_KEYS) | set(params.get("aliases", {}))

    def read(self, cfg: Mapping[str, Any], doc: Doc, params: Mapping[str, Any]) -> None:
        sub = {k: cfg[k] for k in (*ROPE_KEYS, "max_position_embeddings") if cfg.get(k) is not None}
        for theirs, usual in params.get("aliases", {}).items():
            if cfg.get(theirs) is not None:
                sub[usual] = cfg[theirs]
        named = sub.get("partial_rotary_factor", (sub.get("rope_parameters") or {}).get("partial_rotary_factor"))
        if params.get("fraction_default") is not None and named is None:
            sub["partial_rotary_factor"] = params["fraction_default"]
        try:
            rope = Rope.from_hf_config(sub)
        except ValueError as e:
            raise FormatError(f"config.json: {e}") from None
        set_path(doc, params.get("at", "arch.attention.rope"), rope.model_dump())

    def write(self, view: Doc, cfg: Doc, params: Mapping[str, Any]) -> None:
        rope = get_path(view, params.get("at", "arch.attention.rope"))
        if rope is None or rope.get("kind") != "rope":
            raise FormatError("the family's attention has RoPE")
        out = Rope.model_validate(rope).hf_config()
        if params.get("fraction_default") is not None:  # a fraction of 1 is written too: it is not the default
            out["partial_rotary_factor"] = out["rope_parameters"]["partial_rotary_factor"] = rope["fraction"]
        renamed = {usual: theirs for theirs, usual in params.get("aliases", {}).items()}
        for key, value in out.items():
            cfg[renamed.get(key, key)] = value
        if renamed:  # the family's own names only; its rope_parameters keep the usual ones
            for usual in renamed:
                cfg.pop(usual, None)
        for key in params.get("top_level", ()):
            if (out.get("rope_scaling") or {}).get(key) is not None:
                cfg[key] = out["rope_scaling"][key]


class ActivationConverter(Converter):
    """params: `keys` (the config keys naming the activation, first set wins; default
    [hidden_act]), `at` (the ffn path or a list of paths), `gated` (default true), `default`,
    `aliases` ({name a config may hold: the transformers name the class runs instead}, e.g.
    Gemma's legacy `gelu`, which GemmaConfig turns into gelu_pytorch_tanh)."""

    def keys(self, params: Mapping[str, Any]) -> set[str]:
        return set(params.get("keys", ["hidden_act"]))

    def read(self, cfg: Mapping[str, Any], doc: Doc, params: Mapping[str, Any]) -> None:
        keys = params.get("keys", ["hidden_act"])
        names = [cfg[k] for k in keys if k in cfg]
        name = next((n for n in names if n is not None), None if names else params.get("default", "silu"))
        name = params.get("aliases", {}).get(name, name) if isinstance(name, str) else name
        act = ACTIVATIONS.get(name) if isinstance(name, str) else None
        kind = _ffn_kind(act, params.get("gated", True)) if act else None
        if kind is None:
            raise FormatError(f"{keys[0]} {name!r} has no zoo FFN kind")
        fields = {"kind": kind.model_fields["kind"].default}
        if "activation" in kind.model_fields:
            fields["activation"] = act
        for path in _paths(params.get("at", "arch.ffn")):
            merge_path(doc, path, fields)

    def write(self, view: Doc, cfg: Doc, params: Mapping[str, Any]) -> None:
        acts = set()
        for path in _paths(params.get("at", "arch.ffn")):
            ffn = get_path(view, path)
            acts.add(ffn.get("activation") or _kind_activation(ffn["kind"]))
        if len(acts) != 1 or next(iter(acts)) not in HF_ACTIVATION:
            raise FormatError(f"activations {sorted(map(str, acts))} are not one transformers names")
        for key in params.get("keys", ["hidden_act"]):
            cfg[key] = HF_ACTIVATION[next(iter(acts))]


def _paths(at: str | list[str]) -> list[str]:
    return [at] if isinstance(at, str) else list(at)


def _ffn_kind(act: str, gated: bool) -> type[DenseFFN] | None:
    from ...compiler import registry

    for kind in registry.kinds("ffn").values():
        if isinstance(kind, type) and issubclass(kind, DenseFFN) and kind.gated == gated and act in kind.activations:
            return kind
    return None


def _kind_activation(name: str) -> str:
    from ...compiler import registry

    return registry.kinds("ffn")[name].activations[0]  # type: ignore[attr-defined, no-any-return]


class WindowsConverter(Converter):
    """Sliding windows. params: `style`: `all` (Mistral, Starcoder2: every layer when set),
    `qwen` (use_sliding_window; layers from max_window_layers on), `alternating` (Gemma-2: even
    layers slide unless layer_types says otherwise). `layer_types` wins where a config has it."""

    def keys(self, params: Mapping[str, Any]) -> set[str]:
        extra = {"qwen": {"use_sliding_window", "max_window_layers"}}.get(params.get("style", "all"), set())
        return {"sliding_window", "layer_types"} | extra

    def read(self, cfg: Mapping[str, Any], doc: Doc, params: Mapping[str, Any]) -> None:
        style, n = params.get("style", "all"), cfg.get("num_hidden_layers")
        window = cfg.get("sliding_window")
        if style == "qwen" and not cfg.get("use_sliding_window"):
            window = None
        if window is None or (style == "qwen" and window == 0):  # Qwen2-MoE writes 0 for "none"
            return
        if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
            raise FormatError(f"config.json: sliding_window {window!r} is not a positive integer")
        if not isinstance(n, int) or isinstance(n, bool) or not 0 < n <= 4096:
            raise FormatError(f"config.json: num_hidden_layers {n!r} is not a positive integer")
        types = cfg.get("layer_types")
        if types is not None:
            if not isinstance(types, list) or len(types) != n or set(types) - {SLIDING, FULL}:
                raise FormatError(f"config.json: layer_types must list {n} of {SLIDING!r} / {FULL!r}")
            sliding = [i for i, t in enumerate(types) if t == SLIDING]
        elif style == "qwen":
            start = cfg.get("max_window_layers", n)
            sliding = list(range(start if isinstance(start, int) else n, n))
        elif style == "alternating":
            sliding = list(range(0, n, 2))
        else:
            sliding = list(range(n))
        if len(sliding) == n:
            set_path(doc, "arch.attention.sliding_window", window)
        elif sliding:
            doc.setdefault("arch", {}).setdefault("layers", {})[layer_ranges(sliding)] = {
                "attention": {"sliding_window": window}}

    def write(self, view: Doc, cfg: Doc, params: Mapping[str, Any]) -> None:
        style, windows = params.get("style", "all"), [layer["attention"]["sliding_window"] for layer in view["layers"]]
        values = {w for w in windows if w is not None}
        if len(values) > 1:
            raise FormatError(f"sliding windows of {len(values)} sizes")
        window, n = (next(iter(values)) if values else None), len(windows)
        sliding = [i for i, w in enumerate(windows) if w is not None]
        cfg["sliding_window"] = window
        if style == "all":
            if sliding and len(sliding) != n:
                raise FormatError("sliding windows on some layers only")
            return
        cfg["layer_types"] = [SLIDING if w is not None else FULL for w in windows]
        if style == "qwen":
            if sliding and sliding != list(range(sliding[0], n)):
                raise FormatError("Qwen2 slides the layers from max_window_layers on")
            cfg["use_sliding_window"] = bool(sliding)
            cfg["max_window_layers"] = sliding[0] if sliding else n


class ScaleConverter(Converter):
    """Attention scale from a key that holds its inverse square (Gemma-2's query_pre_attn_scalar:
    scale = q ** -0.5; left unset, the default head_dim ** -0.5, when q is the head_dim). params: `key`."""

    def keys(self, params: Mapping[str, Any]) -> set[str]:
        return {params["key"]}

    def read(self, cfg: Mapping[str, Any], doc: Doc, params: Mapping[str, Any]) -> None:
        q = cfg.get(params["key"])
        if q is None:
            return
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not q > 0:
            raise FormatError(f"config.json: {params['key']} {q!r} is not a positive number")
        if q == (doc.get("arch", {}).get("attention") or {}).get("head_dim"):
            return  # the default scale: a spec need not name it to match the config
        set_path(doc, "arch.attention.scale", float(q) ** -0.5)

    def write(self, view: Doc, cfg: Doc, params: Mapping[str, Any]) -> None:
        att = view["arch"]["attention"]
        scale = att.get("scale")
        q = att["head_dim"] if scale is None else scale ** -2
        cfg[params["key"]] = int(round(q)) if abs(q - round(q)) < 1e-6 * max(1.0, q) else q


CONVERTERS: dict[str, Callable[[], Converter]] = {"rope": RopeConverter, "activation": ActivationConverter,
                                                  "windows": WindowsConverter, "scale": ScaleConverter}
