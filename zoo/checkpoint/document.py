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
from ..compiler.paths import name_problem
from ..compiler.pydantic_errors import problems_from_validation
from ..compiler.schema import SCHEMA_VERSION, ModelSpec
from ..compiler.yaml_source import MAX_BYTES, load_yaml_text

SPEC_FILE = "zoo.yaml"
CANONICAL = "canonical"


class CheckpointError(ZooError, RuntimeError):
    """A checkpoint folder or file is missing, corrupt, or does not match its spec."""


@dataclass
class Document:
    """What zoo.yaml says about its folder."""

    spec: ModelSpec
    layout: str = CANONICAL
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    base_model: str | None = None  # the Hub repo the weights come from, when known


def spec_document(spec: ModelSpec, layout: str = CANONICAL, files: dict[str, Any] | None = None,
                  base_model: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "fingerprint": spec.fingerprint(), "layout": layout}
    if base_model:
        doc["base_model"] = base_model
    if files:
        doc["files"] = files
    doc["spec"] = spec.model_dump(mode="json")
    return doc


def load_document(folder: Path) -> dict[str, Any]:
    """zoo.yaml of `folder` as data, read with a spec file's limits (size, values, depth; plain
    YAML only: a 2 KB alias bomb is refused, not expanded)."""
    path = Path(folder) / SPEC_FILE
    try:
        if path.stat().st_size > MAX_BYTES:
            raise CheckpointError(f"{path}: {path.stat().st_size:,} bytes; a {SPEC_FILE} is at most {MAX_BYTES:,}")
        doc, _ = load_yaml_text(path.read_text(encoding="utf-8"), str(path))
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: no {SPEC_FILE}; not a zoo checkpoint") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read it ({e})") from None
    except SpecError as e:
        raise CheckpointError(f"{path}: {e.problems[0].message}") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path}: expected a mapping with schema_version, fingerprint, spec")
    return doc


def read_document(folder: Path) -> Document:
    """zoo.yaml of `folder`, checked: plain bounded YAML (a spec file's limits), this schema
    version, a fingerprint that matches the spec as written, a valid spec, and a manifest whose
    every file lies inside the folder."""
    path = Path(folder) / SPEC_FILE
    doc = load_document(folder)
    if "spec" not in doc:
        raise CheckpointError(f"{path}: expected keys schema_version, fingerprint, spec")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise CheckpointError(f"{path}: schema_version {doc.get('schema_version')!r}; this zoo reads {SCHEMA_VERSION}")
    written = doc.get("fingerprint")
    if not isinstance(written, str) or not written:
        raise CheckpointError(f"{path}: no fingerprint (the sha256 of the spec it holds); a {SPEC_FILE} without one "
                              "cannot be checked for edits")
    if written != written_fingerprint(doc["spec"]):
        raise CheckpointError(f"{path}: fingerprint mismatch (file says {written}, the spec in it "
                              f"hashes to {written_fingerprint(doc['spec'])}): the spec was edited by hand")
    try:
        spec = ModelSpec.model_validate(doc["spec"])
    except ValidationError as e:
        raise SpecError(problems_from_validation(e, doc["spec"], {}, str(path)), source=str(path)) from None
    files = doc.get("files") or {}
    if not isinstance(files, dict) or not all(isinstance(m, dict) for m in files.values()):
        raise CheckpointError(f"{path}: files: expected a mapping of file -> {{size, sha256}}")
    for name in files:  # names inside the folder; where links point is open_checkpoint's check
        why = name_problem(name)
        if why:
            raise CheckpointError(f"{path}: files: {why}")
    base = doc.get("base_model")
    return Document(spec, str(doc.get("layout") or CANONICAL), files, base if isinstance(base, str) and base else None)


def written_fingerprint(raw_spec: Any) -> str:
    """The fingerprint of the spec *as written* (ModelSpec.fingerprint of the spec that was saved).
    Hashing the raw mapping rather than the re-validated spec keeps old checkpoints loadable
    when the schema gains fields with defaults, while any hand edit still changes the hash."""
    return fingerprint_of(raw_spec)


def read_spec(folder: Path) -> ModelSpec:
    return read_document(folder).spec


def write_spec(folder: Path, spec: ModelSpec, layout: str = CANONICAL, files: dict[str, Any] | None = None,
               base_model: str | None = None) -> None:
    text = "# written by zoo: the resolved spec this checkpoint was saved with, its tensor layout and files\n"
    text += yaml.safe_dump(spec_document(spec, layout, files, base_model), sort_keys=False)
    (Path(folder) / SPEC_FILE).write_text(text, encoding="utf-8")
