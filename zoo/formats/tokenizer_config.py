"""transformers' tokenizer files beside zoo's own (issue #16): `tokenizer_config.json`,
`special_tokens_map.json` and, for a SentencePiece model, the equivalent `tokenizer.json`, so
that `transformers.AutoTokenizer.from_pretrained(folder)` gives zoo's ids.

- plain text: `add_bos_token` is whether zoo starts a prompt with the spec's `bos_id`
  (`Model._prompt_ids`), never an eos; the special tokens are the tokenizer's strings for the
  spec's ids.
- `tokenizer_class` is `PreTrainedTokenizerFast` over `tokenizer.json`, for both kinds: zoo's
  SentencePiece `tokenizer.json` reproduces sentencepiece id for id, whereas transformers'
  `LlamaTokenizer(Fast)` rebuilds its own normalizer (it drops the dummy prefix of a leading
  space: " a" encodes differently) and, from `tokenizer.model` alone, needs protobuf.
- `chat_template`: the spec's template as Jinja (`zoo.chat.jinja_template`) when it has one.
- Tekken vocabularies get none of these (transformers reads tekken.json itself).

Files are written into the caller's folder, which is the temporary folder of an atomic save.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..chat import jinja_template

CONFIG = "tokenizer_config.json"
SPECIAL_MAP = "special_tokens_map.json"
SPECIALS = ("bos_token", "eos_token", "pad_token", "unk_token")


def _piece(tok: Any, token_id: int | None) -> str | None:
    if token_id is None or token_id < 0:
        return None
    try:
        return str(tok.id_to_piece(int(token_id)))
    except (IndexError, ValueError):
        return None


def _specials(tok: Any, spec: Any) -> dict[str, str]:
    tspec = spec.tokenizer
    pad = tspec.pad_id if tspec is not None and tspec.pad_id is not None else getattr(tok, "pad_id", -1)
    ids = {"bos_token": tspec.bos_id if tspec is not None else tok.bos_id,
           "eos_token": tspec.eos_id if tspec is not None else tok.eos_id,
           "pad_token": pad, "unk_token": getattr(tok, "unk_id", -1)}
    return {k: p for k, i in ids.items() if (p := _piece(tok, i)) is not None}


def tokenizer_config(tok: Any, spec: Any) -> dict[str, Any]:
    """The tokenizer_config.json of `tok` under `spec` (its tokenizer section and context)."""
    specials = _specials(tok, spec)
    bos = spec.tokenizer.bos_id if spec.tokenizer is not None else None
    out: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": bos is not None and "bos_token" in specials,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(spec.arch.max_seq_len),
        **specials,
    }
    template = jinja_template(spec.tokenizer)
    if template is not None:
        out["chat_template"] = template
    return out


def _set_post_processor(path: Path, bos: str | None) -> None:
    """tokenizer.json's post-processor prepends exactly the bos zoo prepends (or nothing):
    transformers' generic class encodes with it and does not read `add_bos_token` (zoo's own
    encode never runs it)."""
    from tokenizers import Tokenizer, processors

    if not path.is_file():
        return
    t = Tokenizer.from_file(str(path))
    if bos is None:
        t.post_processor = None
    else:
        t.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B",
                                                         special_tokens=[(bos, t.token_to_id(bos))])
    t.save(str(path))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_tokenizer_config(tok: Any, spec: Any, folder: Path) -> None:
    """Write transformers' tokenizer files for `tok` into `folder` (beside tok.save's file)."""
    if not hasattr(tok, "id_to_piece") or hasattr(tok, "special_id"):  # Tekken: transformers reads tekken.json
        return
    if hasattr(tok, "to_tokenizer_json") and not (folder / "tokenizer.json").exists():
        tok.to_tokenizer_json(folder / "tokenizer.json")
    config = tokenizer_config(tok, spec)
    _set_post_processor(folder / "tokenizer.json", config.get("bos_token") if config["add_bos_token"] else None)
    _write_json(folder / CONFIG, config)
    _write_json(folder / SPECIAL_MAP, {k: v for k, v in config.items() if k in SPECIALS})
