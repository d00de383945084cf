"""The model card (README.md) a checkpoint is saved with: Hub metadata in YAML front matter
(library, license, parameters, pipeline), an architecture table, and how to load the folder.

Generated from the spec alone, so a card can never disagree with the weights it describes.
"""

from __future__ import annotations

from typing import Any

import yaml

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


def model_card(spec: ModelSpec, *, params: int, layout: str, hf_loadable: bool, hf_reason: str | None = None,
               repo_id: str | None = None, files: dict[str, int] | None = None, dtype: str | None = None) -> str:
    """README.md text for a checkpoint of `spec`."""
    meta: dict[str, Any] = {"library_name": "zoo", **_license(spec), "pipeline_tag": "text-generation",
                            "tags": sorted({"zoo", "text-generation", *([spec.family] if spec.family else [])})}
    if spec.weights and spec.weights.repo != repo_id:
        meta["base_model"] = spec.weights.repo
    meta["zoo"] = {"parameters": params, "fingerprint": spec.fingerprint(), "schema_version": spec.schema_version,
                   "layout": layout, **({"dtype": dtype} if dtype else {})}
    where = repo_id or "path/to/this/folder"
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "", f"# {spec.name}", ""]
    if spec.description:
        lines += [spec.description, ""]
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
