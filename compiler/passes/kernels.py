"""Kernel selection: the backend a request resolves to (with why), and for each op of the IR
the kernel it runs on that backend and why (`zoo compile --explain`). Each node's kind names
its own ops' kernels; the backend adds what it binds model-wide (linears, element-wise ops,
the decode step). Rows of the layers of a stack are collapsed: blocks.0-31.attn."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ...runtime import backends as backend_registry
from ...runtime.backends import Backend
from ..ir import Node
from ..registry import KernelRow


@dataclass(frozen=True)
class BackendChoice:
    requested: str
    name: str
    available: bool
    why: str


def choose_backend(requested: str | None, device: torch.device | str) -> tuple[BackendChoice, Backend | None]:
    """The backend `requested` resolves to on `device`, why, and the backend itself (None for
    an unknown name). Nothing is refused here: lowering refuses an unavailable one."""
    device = torch.device(device)
    name = backend_registry.resolve_name(requested)
    if name == "auto":
        chosen, why = backend_registry.auto_choice(device)
        return BackendChoice("auto", chosen, True, why), backend_registry.get(chosen, device, check=False)
    if name not in backend_registry.names():
        return BackendChoice(name, name, False, f"unknown backend; known: {', '.join(backend_registry.names())}"), None
    backend = backend_registry.get(name, device, check=False)
    avail = backend.availability(device)
    return BackendChoice(name, name, avail.ok, f"{name}: {avail.reason}"), backend


_INDEXED = re.compile(r"^(.*?)\.(\d+)\.(.+)$")  # blocks.3.attn, vision.blocks.3.ffn


def _collapse(paths: list[str]) -> str:
    """blocks.0.attn … blocks.31.attn → blocks.0-31.attn (when contiguous)."""
    if len(paths) == 1:
        return paths[0]
    parts = [_INDEXED.match(p) for p in paths]
    idx = [int(m.group(2)) for m in parts if m]
    prefix, rest = parts[0].group(1), parts[0].group(3)  # type: ignore[union-attr]
    span = f"{min(idx)}-{max(idx)}" if idx == list(range(min(idx), max(idx) + 1)) else ",".join(map(str, idx))
    return f"{prefix}.{span}.{rest}"


def _rows(node: Node, backend: Backend) -> list[KernelRow]:
    own = node.spec.kernels(node, backend)
    inner = [r for c in node.children for r in _rows(c, backend)]
    return [r for r in own if not r.after_children] + inner + [r for r in own if r.after_children]


def select_kernels(ir: Node, backend: Backend) -> list[KernelRow]:
    """Each op of the IR, the kernel it runs on `backend`, and why."""
    rows = _rows(ir, backend) + [KernelRow(*r) for r in backend.explain_rows()]
    groups: dict[tuple[str, str, str, str], list[str]] = {}
    for r in rows:
        m = _INDEXED.match(r.op)
        role = f"{m.group(1)}.{m.group(3)}" if m else r.op
        groups.setdefault((role, r.kind, r.kernel, r.why), []).append(r.op)
    out = []
    for (_, kind, kernel, why), paths in groups.items():
        plain = [p for p in paths if not _INDEXED.match(p)]
        stacked = [p for p in paths if _INDEXED.match(p)]
        if stacked:
            out.append(KernelRow(_collapse(stacked), kind, kernel, why))
        out += [KernelRow(p, kind, kernel, why) for p in plain]
    return out
