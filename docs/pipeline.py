"""Draws docs/pipeline.png, the picture in docs/architecture.md: the load path from a YAML spec
to a model, and the kind registry every compiler phase asks.

    .venv/bin/python docs/pipeline.py            # needs matplotlib (pip install -e '.[docs]')

The kinds listed in the registry box are read from the registry itself, so the picture is
redrawn from the code, not by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo.compiler import registry  # noqa: E402

# (label, detail, where), top to bottom
STAGES = [
    ("YAML spec", "extends · overrides · ${interpolation}", "specs/, a user's file"),
    ("ModelSpec", "validated, frozen, fingerprinted", "compiler/frontend.py, schema.py"),
    ("IR", "nodes; canonical names; symbolic shapes", "compiler/ir.py"),
    ("passes", "check · account · kernels (+why)", "compiler/passes/"),
    ("runtime modules", "built on the meta device", "compiler/lowering.py → runtime/"),
    ("checkpoint", "format detected once; key map bound to the IR", "zoo/formats/, specs/formats/"),
    ("Model", "weights streamed from mmaps; generate · save · push", "zoo/loading.py, model.py"),
]
ASKED = {1: "fields, unions,\nJSON Schema", 2: "ir()", 3: "check() · cost()\nkernels()", 4: "lower()"}


def draw(out: Path) -> None:
    fig, ax = plt.subplots(figsize=(11.3, 8.2), dpi=110)
    ax.set_xlim(0, 11.3)
    ax.set_ylim(0, 8.2)
    ax.axis("off")
    box_w, box_h, x0 = 5.2, 0.78, 0.4
    ys = [7.3 - i * 1.08 for i in range(len(STAGES))]
    for (label, detail, where), y in zip(STAGES, ys):
        ax.add_patch(FancyBboxPatch((x0, y), box_w, box_h, boxstyle="round,pad=0.03", fc="#eef3fb", ec="#3a5a8c"))
        ax.text(x0 + 0.15, y + box_h - 0.24, label, fontsize=12, weight="bold", va="center")
        ax.text(x0 + 0.15, y + 0.36, detail, fontsize=9, va="center")
        ax.text(x0 + 0.15, y + 0.13, where, fontsize=8, va="center", color="#555555", family="monospace")
    for a, b in zip(ys, ys[1:]):
        ax.add_patch(FancyArrowPatch((x0 + box_w / 2, a), (x0 + box_w / 2, b + box_h), arrowstyle="-|>",
                                     mutation_scale=14, color="#3a5a8c"))
    # the registry, beside the phases it serves
    rx, ry, rw, rh = 6.9, 2.6, 4.2, 5.2
    ax.add_patch(FancyBboxPatch((rx, ry), rw, rh, boxstyle="round,pad=0.03", fc="#fbf3e6", ec="#a0661c"))
    ax.text(rx + 0.15, ry + rh - 0.25, "kind registry", fontsize=12, weight="bold", va="center")
    ax.text(rx + 0.15, ry + rh - 0.55, "compiler/kinds/: one class per kind", fontsize=8, va="center",
            family="monospace", color="#555555")
    lines = [f"{slot}: {', '.join(kinds)}" for slot, kinds in sorted(registry.slots().items())]
    for i, line in enumerate(lines):
        ax.text(rx + 0.15, ry + rh - 0.95 - i * 0.33, line, fontsize=8, va="center", family="monospace")
    for stage, text in ASKED.items():
        y = ys[stage] + box_h / 2
        ax.add_patch(FancyArrowPatch((rx, min(max(y, ry + 0.2), ry + rh - 0.2)), (x0 + box_w, y), arrowstyle="-|>",
                                     mutation_scale=12, color="#a0661c", linestyle="--"))
        ax.text((x0 + box_w + rx) / 2, y + 0.12, text, fontsize=8, ha="center", va="bottom", color="#a0661c")
    ax.text(rx, 1.7, "phases walk the IR and ask each node's kind;\nnone of them names a kind\n"
            "(tests/test_structure.py)", fontsize=9, va="top")
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "pipeline.png"
    draw(target)
    print(f"wrote {target}")
