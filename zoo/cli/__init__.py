"""The `zoo` command line (`zoo …`, `python -m zoo …`): one module per group of commands."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
