"""A content hash of a resolved spec: equal architectures and metadata give equal hashes."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .schema import ModelSpec


def canonical_json(spec: "ModelSpec") -> str:
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def fingerprint(spec: "ModelSpec") -> str:
    return "sha256:" + hashlib.sha256(canonical_json(spec).encode()).hexdigest()
