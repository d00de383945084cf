"""Backend registry: a name → a Backend. `auto` picks the best one available here."""

from __future__ import annotations

import os
import torch

from .base import Availability, Backend, BackendUnavailable
from .eager import EagerBackend
from .sdpa import SDPABackend
from .xformers import XFormersBackend
from .xla import XLABackend

_REGISTRY: dict[str, type[Backend]] = {
    "eager": EagerBackend,
    "sdpa": SDPABackend,
    "xformers": XFormersBackend,
    "xla": XLABackend,
}


def register(name: str, backend: type[Backend]) -> None:
    """Make `backend` (a Backend subclass) selectable by `name`."""
    _REGISTRY[name] = backend


def names() -> list[str]:
    return list(_REGISTRY) + ["auto"]


def resolve_name(name: str | None) -> str:
    """An explicit name wins, then $ZOO_BACKEND, then auto."""
    return (name or os.environ.get("ZOO_BACKEND") or "auto").strip().lower()


def auto_choice(device: torch.device) -> tuple[str, str]:
    """(backend name, why) for `auto` on this device."""
    for name in ("xformers", "xla"):
        if name in _REGISTRY:
            avail = _REGISTRY[name].availability(device)
            if avail.ok:
                return name, f"auto: {avail.reason}"
    return "sdpa", f"auto: sdpa on {device.type}"


def get(name: str | None = None, device: torch.device | str = "cpu", *, check: bool = True) -> Backend:
    """The backend for `name` on `device`; raises BackendUnavailable with the reason if it can't run."""
    device = torch.device(device)
    name = resolve_name(name)
    if name == "auto":
        name, _ = auto_choice(device)
    if name not in _REGISTRY:
        raise BackendUnavailable(f"unknown backend {name!r}; known: {', '.join(names())}")
    backend = _REGISTRY[name]()
    if check:
        avail = backend.availability(device)
        if not avail.ok:
            raise BackendUnavailable(f"{name}: {avail.reason}")
    return backend


__all__ = ["Availability", "Backend", "BackendUnavailable", "get", "names", "register", "resolve_name", "auto_choice"]
