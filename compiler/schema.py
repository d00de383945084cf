"""The spec language's types: one pydantic schema gives YAML for people, typed objects for
code, and a JSON Schema for editors.

Every model is strict (`extra="forbid"`) and frozen; component kinds are discriminated unions on
`kind`, so a new component is one class added to its union. Derived sizes (head_dim, kv heads,
the LLaMA FFN rounding rule) are filled in by validators, so the validated spec is explicit.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

SCHEMA_VERSION = 1


class FieldError(ValueError):
    """A validator's complaint about a key below the model it validates: `at` is that key's
    path relative to the model, so the error can name (and point at) the key itself."""

    def __init__(self, at: tuple[str, ...], message: str):
        super().__init__(message)
        self.at = tuple(str(k) for k in at)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------- positions
class LinearScaling(Strict):
    """Position interpolation: positions are divided by `factor` before rotation."""

    kind: Literal["linear"] = "linear"
    factor: PositiveFloat


class Rope(Strict):
    """1-D rotary embedding over the whole head (half-split layout internally)."""

    kind: Literal["rope"] = "rope"
    theta: PositiveFloat = 10000.0
    scaling: LinearScaling | None = None


# ---------------------------------------------------------------------------------- attention
class Attention(Strict):
    """Multi-head attention; GQA when n_kv_heads < n_heads, MQA when n_kv_heads == 1."""

    kind: Literal["attention"] = "attention"
    n_heads: PositiveInt
    n_kv_heads: PositiveInt | None = Field(None, description="defaults to n_heads (MHA)")
    head_dim: PositiveInt | None = Field(None, description="defaults to dim / n_heads")
    qkv_bias: bool = False
    o_bias: bool = False
    sliding_window: PositiveInt | None = Field(None, description="keys within this many positions, self included")
    rope: Rope | None = Field(default_factory=Rope)

    @model_validator(mode="after")
    def _check(self) -> "Attention":
        kv = self.n_kv_heads or self.n_heads
        if kv > self.n_heads or self.n_heads % kv:
            raise FieldError(("n_kv_heads",), f"n_kv_heads ({kv}) must divide n_heads ({self.n_heads})")
        if self.rope is not None and self.head_dim is not None and self.head_dim % 2:
            raise FieldError(("head_dim",), f"RoPE needs an even head_dim, got {self.head_dim}")
        return self


# ---------------------------------------------------------------------------------- ffn
class _FFNSize(Strict):
    hidden_dim: PositiveInt | None = Field(None, description="explicit size; else the LLaMA rule")
    multiple_of: PositiveInt | None = Field(None, description="LLaMA rule: round up to a multiple of this")
    dim_multiplier: PositiveFloat | None = Field(None, description="LLaMA rule: ffn_dim_multiplier")
    bias: bool = False

    @model_validator(mode="after")
    def _has_size(self) -> "_FFNSize":
        if self.hidden_dim is None and self.multiple_of is None:
            raise ValueError("needs hidden_dim, or multiple_of (and optionally dim_multiplier) for the LLaMA rule")
        return self

    def sized(self, dim: int) -> "_FFNSize":
        """Fill hidden_dim by the LLaMA rule h = int(2*4*dim/3), h = int(m*h), round up."""
        if self.hidden_dim is not None:
            return self
        if self.multiple_of is None:
            raise ValueError("give hidden_dim, or multiple_of (and optionally dim_multiplier) for the LLaMA rule")
        h = int(2 * 4 * dim / 3)
        if self.dim_multiplier is not None:
            h = int(self.dim_multiplier * h)
        h = self.multiple_of * ((h + self.multiple_of - 1) // self.multiple_of)
        return self.model_copy(update={"hidden_dim": h})


class SwiGLU(_FFNSize):
    """w2(silu(w1 x) * w3 x), as in LLaMA."""

    kind: Literal["swiglu"] = "swiglu"


class GeGLU(_FFNSize):
    """w2(gelu(w1 x) * w3 x)."""

    kind: Literal["geglu"] = "geglu"
    activation: Literal["gelu", "gelu_tanh"] = "gelu"


class GeluMLP(_FFNSize):
    """w2(act(w1 x)): the classic two-layer MLP."""

    kind: Literal["gelu-mlp"] = "gelu-mlp"
    activation: Literal["gelu", "gelu_tanh", "relu", "silu"] = "gelu"
    bias: bool = True


Expert = Annotated[Union[SwiGLU, GeGLU, GeluMLP], Field(discriminator="kind")]


class Router(Strict):
    """How a token picks its experts: softmax over the router's logits (float32), the top_k kept."""

    aux_loss_coef: float = Field(0.01, ge=0.0, description="weight of the Switch load-balancing loss in loss()")
    normalize_top_k: bool = Field(True, description="renormalize the kept probabilities to sum to 1 (Mixtral)")


class MoE(Strict):
    """Sparse mixture of experts (Mixtral, Branch-Train-MiX): sum over the top_k experts the
    router picks of g_i(x) * expert_i(x). Experts share one shape and are stored stacked."""

    kind: Literal["moe"] = "moe"
    n_experts: PositiveInt
    top_k: PositiveInt = 2
    expert: Expert = Field(description="the shape of every expert (an ffn without biases)")
    router: Router = Field(default_factory=Router)

    @model_validator(mode="after")
    def _check(self) -> "MoE":
        if self.top_k > self.n_experts:
            raise FieldError(("top_k",), f"top_k ({self.top_k}) must be at most n_experts ({self.n_experts})")
        if self.expert.bias:
            raise FieldError(("expert", "bias"), "stacked experts have no biases; set bias: false")
        return self

    @property
    def hidden_dim(self) -> int | None:
        """One expert's hidden size."""
        return self.expert.hidden_dim

    @property
    def bias(self) -> bool:
        return False

    def sized(self, dim: int) -> "MoE":
        return self.model_copy(update={"expert": self.expert.sized(dim)})


FFN = Annotated[Union[SwiGLU, GeGLU, GeluMLP, MoE], Field(discriminator="kind")]


# ---------------------------------------------------------------------------------- norms
class RMSNorm(Strict):
    kind: Literal["rmsnorm"] = "rmsnorm"
    eps: PositiveFloat = 1e-5


class LayerNorm(Strict):
    kind: Literal["layernorm"] = "layernorm"
    eps: PositiveFloat = 1e-5
    bias: bool = True


Norm = Annotated[Union[RMSNorm, LayerNorm], Field(discriminator="kind")]


# ---------------------------------------------------------------------------------- heads
class NextTokenHead(Strict):
    kind: Literal["next_token"] = "next_token"


class MultiTokenHead(Strict):
    """n future-token heads (Gloeckle et al. 2024): the last n of n_layers blocks become heads,
    each applied to the trunk's output; head i predicts token t+i+1. Norm and output are shared."""

    kind: Literal["multi_token"] = "multi_token"
    n_future: PositiveInt = Field(description="number of heads (tokens predicted per position)")


Heads = Annotated[Union[NextTokenHead, MultiTokenHead], Field(discriminator="kind")]


# ---------------------------------------------------------------------------------- blocks
_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*$")
LAYER_RANGE_PATTERN = r"^\s*\d+\s*(-\s*\d+)?\s*(,\s*\d+\s*(-\s*\d+)?\s*)*$"


def parse_layer_range(text: str) -> list[int]:
    """'0-3' -> [0,1,2,3]; '5' -> [5]; '0-1,6' -> [0,1,6]. Ranges are inclusive."""
    out: list[int] = []
    for part in str(text).split(","):
        m = _RANGE.match(part)
        if not m:
            raise ValueError(f"layer range {text!r} is not of the form 'A-B', 'A' or 'A-B,C'")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ValueError(f"layer range {text!r} runs backwards")
        out.extend(range(lo, hi + 1))
    return out


class LayerOverride(Strict):
    """Components that replace the stack's defaults on a range of layers."""

    attention: Attention | None = None
    ffn: FFN | None = None
    norm: Norm | None = None


class Block(Strict):
    """The effective components of one pre-norm transformer block."""

    attention: Attention
    ffn: FFN
    norm: Norm


class Decoder(Strict):
    """A decoder-only transformer: embed, pre-norm blocks, final norm, output head."""

    kind: Literal["decoder"] = "decoder"
    dim: PositiveInt
    n_layers: PositiveInt
    vocab_size: PositiveInt
    max_seq_len: PositiveInt = 2048
    attention: Attention
    ffn: FFN
    norm: Norm = Field(default_factory=RMSNorm)
    tie_embeddings: bool = False
    layers: dict[str, LayerOverride] = Field(default_factory=dict, description="per-layer overrides by range",
                                             json_schema_extra={"propertyNames": {"pattern": LAYER_RANGE_PATTERN}})
    heads: Heads = Field(default_factory=NextTokenHead)

    @model_validator(mode="after")
    def _check(self) -> "Decoder":
        """What needs more than one component: layer ranges against n_layers, and the sizes
        derived from dim, so that everything `block(i)` computes is valid (nothing fails later)."""
        owner: dict[int, str] = {}
        for key in self.layers:
            try:
                indices = parse_layer_range(key)
            except ValueError as e:
                raise FieldError(("layers", key), str(e)) from None
            for i in indices:
                if i >= self.n_layers:
                    raise FieldError(("layers", key), f"layer {i} is past the last layer ({self.n_layers - 1})")
                if i in owner:
                    raise FieldError(("layers", key), f"layer {i} is also in range {owner[i]!r}")
                owner[i] = key
        if self.heads.kind == "multi_token" and self.heads.n_future > self.n_layers:
            raise FieldError(("heads", "n_future"), f"{self.heads.n_future} heads need at least that many layers "
                                                    f"(n_layers is {self.n_layers}; heads are the last blocks)")
        attentions = [(("attention",), self.attention)]
        attentions += [(("layers", k, "attention"), ov.attention) for k, ov in self.layers.items() if ov.attention]
        for at, attn in attentions:
            if attn.head_dim is None:
                if self.dim % attn.n_heads:
                    raise FieldError(at, f"dim ({self.dim}) is not divisible by n_heads ({attn.n_heads}); "
                                         "give head_dim")
                if attn.rope is not None and (self.dim // attn.n_heads) % 2:
                    raise FieldError(at, f"RoPE needs an even head_dim, got dim/n_heads = {self.dim // attn.n_heads}")
        return self

    def block(self, i: int) -> Block:
        """Layer i's components with overrides applied and sizes derived."""
        attn, ffn, norm = self.attention, self.ffn, self.norm
        for key, ov in self.layers.items():
            if i in parse_layer_range(key):
                attn, ffn, norm = ov.attention or attn, ov.ffn or ffn, ov.norm or norm
        return Block(attention=complete_attention(attn, self.dim), ffn=ffn.sized(self.dim), norm=norm)


def complete_attention(attn: Attention, dim: int) -> Attention:
    head_dim = attn.head_dim or dim // attn.n_heads
    if attn.head_dim is None and dim % attn.n_heads:
        raise ValueError(f"dim ({dim}) is not divisible by n_heads ({attn.n_heads}); give head_dim")
    return attn.model_copy(update={"head_dim": head_dim, "n_kv_heads": attn.n_kv_heads or attn.n_heads})


# vision-language kinds live beside (they compose the decoder defined above)
from .schema_vision import MLPAdapter, Rope2D, VisionAttention, VisionEncoder, VisionLanguage  # noqa: E402, F401

Arch = Annotated[Union[Decoder, VisionLanguage], Field(discriminator="kind")]


# ---------------------------------------------------------------------------------- metadata
class InfillSpec(Strict):
    """Code Llama fill-in-the-middle token ids."""

    prefix_id: int
    suffix_id: int
    middle_id: int
    eot_id: int


class TokenizerSpec(Strict):
    kind: Literal["sentencepiece", "bpe", "tekken"] = "sentencepiece"
    repo: str | None = Field(None, description="Hub repo holding the tokenizer, when not the weights' repo")
    file: str = "tokenizer.model"
    bos_id: int | None = 1
    eos_id: int | None = 2
    pad_id: int | None = None
    infill: InfillSpec | None = None


class WeightsSpec(Strict):
    repo: str = Field(description="Hugging Face Hub repository id")
    revision: str = Field("main", description="branch, tag or commit sha to pin")
    format: str = Field("hf-llama", description="key map name in specs/formats/")
    subfolder: str | None = Field(None, description="folder inside the repo holding this model's files")


class Published(Strict):
    """Facts about the released model, checked by the tests against what the IR computes."""

    params: PositiveInt | None = None
    paper: str | None = None


class ModelSpec(Strict):
    """A complete, loadable model: architecture plus what is needed to run it."""

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str
    family: str | None = None
    description: str = ""
    license: str | None = None
    arch: Arch
    tokenizer: TokenizerSpec | None = None
    weights: WeightsSpec | None = None
    published: Published | None = None

    def fingerprint(self) -> str:
        from .fingerprint import fingerprint

        return fingerprint(self)


_INTERPOLATION = {"type": "string", "pattern": r"\$\{.*\}", "description": "an omegaconf interpolation"}
_ANNOTATIONS = ("title", "description", "default", "examples")


def _as_file_schema(node: Any) -> Any:
    """Relax the schema of a resolved spec into that of a file as written: any key may come from
    the file's `extends` parent (nothing is required, and a component may omit `kind`, so
    `oneOf` becomes `anyOf`), and any number or boolean may be an interpolation `${...}`."""
    if isinstance(node, list):
        return [_as_file_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _as_file_schema(v) for k, v in node.items() if k not in ("required", "discriminator")}
    if "oneOf" in out:
        out["anyOf"] = out.pop("oneOf")
    if out.get("type") in ("integer", "number", "boolean"):
        inner = {k: v for k, v in out.items() if k not in _ANNOTATIONS}
        out = {k: v for k, v in out.items() if k in _ANNOTATIONS}
        out["anyOf"] = [inner, dict(_INTERPOLATION)]
    return out


def json_schema(resolved: bool = False) -> dict[str, Any]:
    """The JSON Schema of a spec file as written, before `extends` and interpolation are
    resolved (what an editor checks while you type); `resolved=True`: of a complete spec (a
    checkpoint's `zoo.yaml` spec, or `zoo show --resolved`)."""
    schema = ModelSpec.model_json_schema()
    if not resolved:
        schema = _as_file_schema(schema)
        schema["properties"]["extends"] = {"type": "string", "description": "parent spec name or path"}
        schema["properties"]["abstract"] = {"type": "boolean", "description": "a family file, not a loadable model"}
        # `arch.text: {extends: NAME}`: a vision-language model's decoder is model NAME's arch (frontend)
        schema["$defs"]["Decoder"]["properties"]["extends"] = {"type": "string",
                                                               "description": "start from model NAME's arch"}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "zoo model spec" + ("" if not resolved else " (resolved)")
    return schema
