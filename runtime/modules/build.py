"""How the compiler tells the runtime which module to build for a component.

A component kind lowers to a `Build`: the runtime module class and the keyword arguments its
constructor takes besides the ones the parent supplies (the width). The parent module calls
it: `self.attn_norm = cfg.norm(dim)`. A new component kind therefore needs no config record in
the runtime and no branch in a `build_*` dispatcher: its module class is its config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class Build:
    cls: type[nn.Module]
    kwargs: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, module: type[nn.Module], **kwargs: Any) -> "Build":
        return cls(module, tuple(sorted(kwargs.items())))

    def __call__(self, *args: Any) -> nn.Module:
        return self.cls(*args, **dict(self.kwargs))

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.kwargs).get(key, default)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs)
        return f"{self.cls.__name__}({args})"
