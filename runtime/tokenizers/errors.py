"""Typed errors for the tokenizer package.

Kept in its own module so that both the proto reader and the tokenizer can raise the same
type without import cycles, and so callers can catch tokenizer problems specifically.
"""

from __future__ import annotations

from ..errors import ZooError


class TokenizerError(ZooError, ValueError):
    """A tokenizer file is missing, corrupt, or uses a feature this runtime cannot reproduce.

    Subclasses ``ValueError`` so generic "bad input" handlers still catch it.
    """
