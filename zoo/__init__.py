"""zoo: large language and vision-language models as data.

    import zoo
    m = zoo.build("llama-2-7b", overrides=["arch.n_layers=2", "arch.dim=64"], init="random")
    m = zoo.load("./checkpoint")
"""

from __future__ import annotations

from pathlib import Path as _Path


def _source_checkout_path() -> None:
    """In a source checkout that is not installed (PYTHONPATH=. on a machine with its own torch),
    `zoo.compiler`, `zoo.runtime` and `zoo.specs` are the sibling folders that pyproject's
    package-dir maps in when installing: let the package path find them there too."""
    here = _Path(__file__).resolve().parent
    root = here.parent
    if not (here / "compiler").is_dir() and (root / "compiler" / "__init__.py").is_file() \
            and (root / "pyproject.toml").is_file():
        __path__.append(str(root))  # type: ignore[name-defined]


_source_checkout_path()

from . import tools  # noqa: E402
from .api import build, compile, convert, list_models, load, push, spec  # noqa: E402
from .compiler.errors import SpecError, UnknownModelError, ZooError  # noqa: E402
from .compiler.schema import ModelSpec  # noqa: E402
from .model import Model  # noqa: E402

__version__ = "0.1.0"


def list() -> "list[str]":  # noqa: A001 - the design's public name
    """Names of every loadable model in the catalog."""
    return [e.name for e in list_models()]


__all__ = ["build", "compile", "convert", "list", "list_models", "load", "push", "spec", "Model", "ModelSpec",
           "SpecError", "UnknownModelError", "ZooError", "tools"]
