"""The model card (README.md) a checkpoint is saved with: Hub metadata in YAML front matter
(library, license, parameters, pipeline), an architecture table, and how to load the folder.

Generated from the spec, so a card can never disagree with the architecture it describes, and
from what is known of the weights: `base_model` names a Hub repo only when the weights were read
from it (a model built with random weights has none), and a spec changed from the catalog's model
of the same name is not presented as that model: the card carries its own name and the changes.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..compiler.errors import ZooError
from ..compiler.schema import ModelSpec

# license ids the Hub recognises (a subset: the families in the catalog and the common ones)
HUB_LICENSES = {"apache-2.0", "mit", "llama2", "llama3", "llama3.1", "llama3.2", "llama3.3", "cc-by-4.0",
                "cc-by-nc-4.0", "cc-by-sa-4.0", "bsd-3-clause", "openrail", "gemma", "other"}


def _license(spec: ModelSpec) -> dict[str, str]:
    lic = (spec.license or "").strip()
    if not lic:
        return {}
    if lic.lower() in HUB_LICENSES:
        return {"license": lic.lower()}
    slug = "".join(c if c.isalnum() else "-" for c in lic.lower()).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return {"license": "other", "license_name": slug, "license_link": "LICENSE"}


def architecture_rows(spec: ModelSpec, params: int) -> list[tuple[str, str]]:
    """The card's architecture table: the parameter count and the arch kind's summary lines."""
    return [("parameters", f"{params:,}"), *spec.arch.summary()]


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: data}


def catalog_changes(spec: ModelSpec) -> list[str] | None:
    """`key: catalog -> this` for each architecture or tokenizer value where `spec` differs from
    the catalog's model of the same name; None when there is no such catalog model."""
    from .. import catalog  # the catalog is only needed for cards

    try:
        base = catalog.get_spec(spec.name)
    except (ZooError, OSError):
        return None
    mine, theirs = _flat(spec.model_dump(mode="json")), _flat(base.model_dump(mode="json"))
    keys = [k for k in sorted(set(mine) | set(theirs)) if k.split(".")[0] in ("arch", "tokenizer", "vision")
            and mine.get(k) != theirs.get(k)]
    return [f"{k}: {theirs.get(k)!r} -> {mine.get(k)!r}" for k in keys]


def model_card(spec: ModelSpec, *, params: int, layout: str, hf_loadable: bool, hf_reason: str | None = None,
               repo_id: str | None = None, files: dict[str, int] | None = None, dtype: str | None = None,
               base_model: str | None = None, name: str | None = None) -> str:
    """README.md text for a checkpoint of `spec`. `base_model`: the Hub repo its weights were
    read from (None: built, not loaded); `name`: the checkpoint's own name (its folder or repo),
    the title when the spec differs from the catalog model it is named after."""
    meta: dict[str, Any] = {"library_name": "zoo", **_license(spec), "pipeline_tag": "text-generation",
                            "tags": sorted({"zoo", "text-generation", *([spec.family] if spec.family else [])})}
    if base_model and base_model != repo_id:
        meta["base_model"] = base_model
    changes = catalog_changes(spec)
    title = spec.name
    if changes:
        own = (repo_id.rsplit("/", 1)[-1] if repo_id else name) or ""
        title = own if own and own != spec.name else f"{spec.name} (modified)"
    meta["zoo"] = {"parameters": params, "fingerprint": spec.fingerprint(), "schema_version": spec.schema_version,
                   "layout": layout, **({"dtype": dtype} if dtype else {})}
    where = repo_id or "path/to/this/folder"
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "", f"# {title}", ""]
    if changes:
        lines += [f"Built from zoo's `{spec.name}` spec with {len(changes)} change(s), so it is not that model:", ""]
        lines += [f"- `{c}`" for c in changes[:20]] + (["- …"] if len(changes) > 20 else []) + [""]
    elif spec.description:
        lines += [spec.description, ""]
    if base_model is None:
        lines += ["No base model is recorded: its weights were built by zoo (random, or trained from scratch) "
                  "or loaded from a local folder of unknown origin.", ""]
    lines += ["## Architecture", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in architecture_rows(spec, params)]
    lines += ["", "## How to load", "", "With zoo (spec and weights together):", "", "```python",
              "import zoo", "", f'model = zoo.load("{where}")                      # dtype="bfloat16", device="cuda" …',
              "```", ""]
    if hf_loadable:
        lines += ["With transformers (the same files: tensors are stored under transformers' names):", "", "```python",
                  "from transformers import AutoModelForCausalLM", "",
                  f'model = AutoModelForCausalLM.from_pretrained("{where}")', "```", ""]
    elif hf_reason:
        lines += [f"transformers cannot load this folder: {hf_reason}.", ""]
    if files:
        lines += ["## Files", "", "| file | bytes |", "|---|---|"]
        lines += [f"| `{name}` | {size:,} |" for name, size in sorted(files.items())]
        lines += ["", "`zoo.yaml` holds the resolved spec and the sha256 of every file above.", ""]
    if spec.license:
        lines += ["## License", "", spec.license, ""]
    return "\n".join(lines)
