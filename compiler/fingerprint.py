"""A content hash of a resolved spec: equal architectures and metadata give equal hashes."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def fingerprint_of(data: Any) -> str:
    """sha256 of a spec's JSON dump (`ModelSpec.fingerprint()`), or of a spec mapping as written."""
    return "sha256:" + hashlib.sha256(canonical_json(data).encode()).hexdigest()
