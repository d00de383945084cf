"""The zoo's own checkpoint folder: `zoo.yaml` (resolved spec, schema version, fingerprint)
beside canonical-name safetensors. Writes are atomic: a temporary folder renamed into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

from .compiler.errors import SpecError, ZooError
from .compiler.schema import SCHEMA_VERSION, ModelSpec

SPEC_FILE = "zoo.yaml"


class CheckpointError(ZooError, RuntimeError):
    """A checkpoint folder or file is missing, corrupt, or does not match its spec."""


def spec_document(spec: ModelSpec) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "fingerprint": spec.fingerprint(), "spec": spec.model_dump(mode="json")}


def read_spec(folder: Path) -> ModelSpec:
    path = Path(folder) / SPEC_FILE
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: no {SPEC_FILE}; not a zoo checkpoint") from None
    except yaml.YAMLError as e:
        raise CheckpointError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(doc, dict) or "spec" not in doc:
        raise CheckpointError(f"{path}: expected keys schema_version, fingerprint, spec")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise CheckpointError(f"{path}: schema_version {doc.get('schema_version')!r}; this zoo reads {SCHEMA_VERSION}")
    from pydantic import ValidationError

    from .compiler.pydantic_errors import problems_from_validation

    try:
        spec = ModelSpec.model_validate(doc["spec"])
    except ValidationError as e:
        raise SpecError(problems_from_validation(e, doc["spec"], {}, str(path)), source=str(path)) from None
    if doc.get("fingerprint") and doc["fingerprint"] != spec.fingerprint():
        raise CheckpointError(f"{path}: fingerprint mismatch (file says {doc['fingerprint']}, "
                              f"spec hashes to {spec.fingerprint()}): the spec was edited by hand")
    return spec


@contextmanager
def atomic_folder(target: Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success it replaces `target` in one rename."""
    target = Path(target).absolute()
    if target.exists() and not overwrite:
        raise CheckpointError(f"{target} exists (pass overwrite=True)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_spec(folder: Path, spec: ModelSpec) -> None:
    text = "# written by zoo: the resolved spec this checkpoint was saved with\n"
    text += yaml.safe_dump(spec_document(spec), sort_keys=False)
    (Path(folder) / SPEC_FILE).write_text(text, encoding="utf-8")


def save(model: Any, path: str | Path, *, max_shard_size: int = 5 * 2**30, overwrite: bool = True) -> Path:
    """zoo.yaml + (sharded) safetensors + tokenizer, written atomically."""
    from .weights import save_sharded

    target = Path(path)
    with atomic_folder(target, overwrite) as tmp:
        write_spec(tmp, model.spec)
        save_sharded(model.state_dict(), tmp, max_shard_size, metadata={"zoo_fingerprint": model.spec.fingerprint()})
        tok = getattr(model, "tokenizer", None)
        if tok is not None and hasattr(tok, "save"):
            tok.save(tmp)
    return target.absolute()
