"""What the benches that draw a figure share: matplotlib (the `docs` / `bench` extra) imported
off-screen only when drawing, the --plot / --json / --from-json options, a redraw from saved
figures, a light grid, and the save (note line, parent folders, the figure closed)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no screen), imported here so that running a
    benchmark without drawing does not need matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def add_figure_args(ap: argparse.ArgumentParser, what: str = "the table", run: str = "running",
                    source: str | None = "a --json file") -> None:
    """--plot PATH, --json PATH (where `source` is None the bench saves its figures elsewhere
    and has no --json) and --from-json PATH."""
    ap.add_argument("--plot", type=Path, default=None, help=f"draw {what} into this PNG (matplotlib)")
    if source == "a --json file":
        ap.add_argument("--json", type=Path, default=None, help=f"save the figures of {what} to this JSON file")
    ap.add_argument("--from-json", type=Path, default=None,
                    help=f"redraw --plot from {source or 'a --json file'} of an earlier run instead of {run}")


def redraw(ap: argparse.ArgumentParser, args: argparse.Namespace, draw: Callable[[dict, Path], None]) -> bool:
    """With --from-json: draw the saved figures into --plot and say so (True: nothing else to do)."""
    if not args.from_json:
        return False
    if not args.plot:
        ap.error("--from-json needs --plot")
    draw(json.loads(args.from_json.read_text()), args.plot)
    print(f"wrote {args.plot}")
    return True


def emit(args: argparse.Namespace, result: dict, draw: Callable[[dict, Path], None]) -> None:
    """A run's figures saved to --json and drawn into --plot, where asked for."""
    if getattr(args, "json", None):
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.plot:
        draw(result, args.plot)
        print(f"wrote {args.plot}")


def light_grid(axes: Any, axis: str) -> None:
    for ax in axes:
        ax.grid(axis=axis, color="#dddddd")
        ax.set_axisbelow(True)


def save(fig: Any, path: Path, note: str = "", note_y: float = -0.02, tight: bool = True) -> None:
    """A grey note under the figure (when given), then the PNG, its folder made; the figure closed."""
    if note:
        fig.text(0.5, note_y, note, ha="center", va="top", fontsize=8, color="#555555")
    if tight:
        fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    pyplot().close(fig)
