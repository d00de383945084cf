"""The one error family: every failure zoo reports on bad input is a `ZooError`.

It lives here, in the lowest layer, so the runtime's own errors (tokenizers, images,
backends, generation arguments) belong to it too; `zoo.ZooError` is this class. Each subclass
also derives from the builtin a caller would expect (ValueError for a bad value …), so
`except ValueError` keeps working.
"""

from __future__ import annotations


class ZooError(Exception):
    """Base of every error zoo raises on purpose (bad specs, checkpoints, arguments, Hub)."""


class UsageError(ZooError, ValueError):
    """An argument a caller passed is wrong: the message names it and what it accepts."""
