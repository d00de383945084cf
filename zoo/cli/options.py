"""Command-line options several commands share."""

from __future__ import annotations

import argparse


def add_spec_and_format(p: argparse.ArgumentParser) -> None:
    """--spec / --format: load a folder as a spec says, its tensors where a key map says."""
    p.add_argument("--spec", default=None, help="a spec (catalog name or YAML path) to build instead of what the "
                                                "folder's config says")
    p.add_argument("--format", default=None, help="the folder's key map (format name or YAML path); with --spec, "
                                                  "for a layout zoo does not detect")
