"""`zoo.yaml`, the document at the top of a zoo checkpoint folder.

It holds the resolved spec (schema version, sha256 fingerprint), the tensor layout of the
folder (`layout:` a format name, or `canonical`) and a manifest of every other file with its
size and sha256 (integrity.py), so a checkpoint always loads with the architecture it was
trained with and a damaged or tampered file is named, not loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..compiler.errors import SpecError, ZooError
from ..compiler.fingerprint import fingerprint_of
from ..compiler.pydantic_errors import problems_from_validation
from ..compiler.schema import SCHEMA_VERSION, ModelSpec

SPEC_FILE = "zoo.yaml"
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's safe loader: same documents, 10x faster
CANONICAL = "canonical"


class CheckpointError(ZooError, RuntimeError):
    """A checkpoint folder or file is missing, corrupt, or does not match its spec."""


@dataclass
class Document:
    """What zoo.yaml says about its folder."""

    spec: ModelSpec
    layout: str = CANONICAL
    files: dict[str, dict[str, Any]] = field(default_factory=dict)


def spec_document(spec: ModelSpec, layout: str = CANONICAL, files: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "fingerprint": spec.fingerprint(), "layout": layout}
    if files:
        doc["files"] = files
    doc["spec"] = spec.model_dump(mode="json")
    return doc


def read_document(folder: Path) -> Document:
    path = Path(folder) / SPEC_FILE
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: no {SPEC_FILE}; not a zoo checkpoint") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(doc, dict) or "spec" not in doc:
        raise CheckpointError(f"{path}: expected keys schema_version, fingerprint, spec")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise CheckpointError(f"{path}: schema_version {doc.get('schema_version')!r}; this zoo reads {SCHEMA_VERSION}")
    try:
        spec = ModelSpec.model_validate(doc["spec"])
    except ValidationError as e:
        raise SpecError(problems_from_validation(e, doc["spec"], {}, str(path)), source=str(path)) from None
    if doc.get("fingerprint") and doc["fingerprint"] != written_fingerprint(doc["spec"]):
        raise CheckpointError(f"{path}: fingerprint mismatch (file says {doc['fingerprint']}, the spec in it "
                              f"hashes to {written_fingerprint(doc['spec'])}): the spec was edited by hand")
    files = doc.get("files") or {}
    if not isinstance(files, dict):
        raise CheckpointError(f"{path}: files: expected a mapping of file -> {{size, sha256}}")
    return Document(spec, str(doc.get("layout") or CANONICAL), files)


def written_fingerprint(raw_spec: Any) -> str:
    """The fingerprint of the spec *as written* (ModelSpec.fingerprint of the spec that was saved).
    Hashing the raw mapping rather than the re-validated spec keeps old checkpoints loadable
    when the schema gains fields with defaults, while any hand edit still changes the hash."""
    return fingerprint_of(raw_spec)


def read_spec(folder: Path) -> ModelSpec:
    return read_document(folder).spec


def write_spec(folder: Path, spec: ModelSpec, layout: str = CANONICAL, files: dict[str, Any] | None = None) -> None:
    text = "# written by zoo: the resolved spec this checkpoint was saved with, its tensor layout and files\n"
    text += yaml.safe_dump(spec_document(spec, layout, files), sort_keys=False)
    (Path(folder) / SPEC_FILE).write_text(text, encoding="utf-8")
