"""Typed errors for image input, so callers can tell bad images from other failures."""

from __future__ import annotations

from ..errors import ZooError


class ImageError(ZooError, ValueError):
    """An image cannot be used as model input. Subclasses ``ValueError``."""


class NotAnImageError(ImageError):
    """The input is neither an image file nor an image object this runtime understands."""


class EmptyImageError(ImageError):
    """The image has no pixels (a zero width or height)."""


class ImageTooLargeError(ImageError):
    """The file or the decoded image exceeds the configured size guard."""
