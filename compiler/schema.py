"""The spec language: one pydantic schema gives YAML for people, typed objects for code, and a
JSON Schema for editors.

The components are the registered kinds (`compiler/kinds/`, one class each); this module adds
the model-level record (`ModelSpec`: arch, tokenizer, weights, published facts) and the JSON
Schema of spec files. Every model is strict (`extra="forbid"`) and frozen; derived sizes
(head_dim, kv heads, the LLaMA FFN rounding rule) are filled in by the kinds, so the validated
spec is explicit.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from annotated_types import Gt
from pydantic import Field, field_validator, model_validator

from . import registry
from .fingerprint import fingerprint_of
from .kinds import (
    LAYER_RANGE_PATTERN,
    Attention,
    Block,
    Decoder,
    DenseFFN,
    GeGLU,
    GeluMLP,
    LayerNorm,
    LayerOverride,
    LinearScaling,
    MLPAdapter,
    MoE,
    MultiTokenHead,
    NextTokenHead,
    RMSNorm,
    Rope,
    Rope2D,
    Router,
    SwiGLU,
    VisionEncoder,
    VisionLanguage,
    parse_layer_range,
)
from .paths import name_problem
from .quantization import Quantization
from .registry import FieldError, Kind, Slot, Strict
from .values import TokenId

SCHEMA_VERSION = 1

__all__ = ["SCHEMA_VERSION", "Attention", "Block", "Decoder", "DenseFFN", "FieldError", "GeGLU", "GeluMLP",
           "InfillSpec", "Kind", "LAYER_RANGE_PATTERN", "LayerNorm", "LayerOverride", "LinearScaling", "MLPAdapter",
           "ModelSpec", "MoE", "MultiTokenHead", "NextTokenHead", "Published", "Quantization", "RMSNorm", "Rope", "Rope2D",
           "Router",
           "Slot", "Strict", "SwiGLU", "TokenizerSpec", "VisionEncoder", "VisionLanguage", "WeightsSpec",
           "json_schema", "parse_layer_range"]


# ---------------------------------------------------------------------------------- metadata
class InfillSpec(Strict):
    """Code Llama fill-in-the-middle token ids."""

    prefix_id: TokenId
    suffix_id: TokenId
    middle_id: TokenId
    eot_id: TokenId


class ChatSpec(Strict):
    """The chat format: a template of `specs/formats/chat/` (zoo/chat.py renders it) and values
    for the template's parameters (e.g. `default_system`, `date_string`)."""

    template: str = Field(description="chat template name: a file of specs/formats/chat/ (llama-2, chatml ...)")
    params: dict[str, str] = Field(default_factory=dict, description="values for the template's parameters")


class TokenizerSpec(Strict):
    kind: Literal["sentencepiece", "bpe", "tekken"] = "sentencepiece"
    repo: str | None = Field(None, description="Hub repo holding the tokenizer, when not the weights' repo")
    file: str = "tokenizer.model"
    bos_id: TokenId | None = 1
    eos_id: TokenId | None = 2
    pad_id: TokenId | None = None
    infill: InfillSpec | None = None
    chat: ChatSpec | None = Field(None, description="the chat format, for chat/instruct models (`zoo chat`, m.chat)")

    @field_validator("file")
    @classmethod
    def _inside(cls, file: str) -> str:
        """The tokenizer file is a name inside the checkpoint folder: never absolute or `..`."""
        why = name_problem(file)
        if why:
            raise ValueError(why)
        return file


class WeightsSpec(Strict):
    repo: str = Field(description="Hugging Face Hub repository id")
    revision: str = Field("main", description="branch, tag or commit sha to pin")
    format: str = Field("hf-llama", description="key map name in specs/formats/")
    subfolder: str | None = Field(None, description="folder inside the repo holding this model's files")

    @field_validator("subfolder")
    @classmethod
    def _inside(cls, subfolder: str | None) -> str | None:
        why = name_problem(subfolder) if subfolder is not None else None
        if why:
            raise ValueError(why)
        return subfolder


class Published(Strict):
    """Facts about the released model, checked by the tests against what the IR computes."""

    params: Annotated[int, Gt(0)] | None = None
    paper: str | None = None


class ModelSpec(Strict):
    """A complete, loadable model: architecture plus what is needed to run it."""

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str
    family: str | None = None
    description: str = ""
    license: str | None = None
    arch: Annotated[Kind, Slot("arch")]
    tokenizer: TokenizerSpec | None = None
    weights: WeightsSpec | None = None
    published: Published | None = None
    quantization: Quantization | None = Field(None, exclude_if=lambda v: v is None,
                                              description="how the weight matrices are stored (int8, int4)")

    @model_validator(mode="after")
    def _ids_in_vocabulary(self) -> "ModelSpec":
        """Every token id the tokenizer section names is an id of the model's vocabulary."""
        tok = self.tokenizer
        if tok is None:
            return self
        vocab = self.arch.language_model().vocab_size  # type: ignore[attr-defined]
        ids = [((k,), getattr(tok, k)) for k in ("bos_id", "eos_id", "pad_id")]
        if tok.infill is not None:
            ids += [(("infill", k), getattr(tok.infill, k)) for k in ("prefix_id", "suffix_id", "middle_id", "eot_id")]
        for at, v in ids:
            if v is not None and v >= vocab:
                raise FieldError(("tokenizer", *at), f"{v} is not below the vocab_size ({vocab})")
        return self

    def fingerprint(self) -> str:
        """A content hash: equal architectures and metadata give equal hashes."""
        return fingerprint_of(self.model_dump(mode="json"))


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
        # `arch.text: {extends: NAME}`: a component under arch may start from model NAME's arch (frontend)
        for cls in registry.kinds("arch").values():
            if cls.__name__ in schema["$defs"]:
                schema["$defs"][cls.__name__]["properties"]["extends"] = {
                    "type": "string", "description": "start from model NAME's arch"}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "zoo model spec" + ("" if not resolved else " (resolved)")
    return schema
