"""The look of every figure: paper column widths, a colour-blind-safe palette, one colour
per method that stays the same across figures and runs, legends outside the axes.

A two-column paper's single column is about 3.3 in wide, a figure across both about
6.9 in; text is set at 7-8 pt so that it reads at either width when printed at 100%.
"""

from __future__ import annotations

import hashlib
import textwrap
from collections.abc import Iterable
from typing import Any, Literal

Width = Literal["single", "double"]
WIDTHS: dict[str, float] = {"single": 3.3, "double": 6.9}  # inches

# Paul Tol's "muted" scheme (distinct under the common colour-vision deficiencies) and
# Okabe & Ito's orange and vermillion: eleven colours, one per built-in method.
PALETTE = (
    "#332288",
    "#88CCEE",
    "#44AA99",
    "#117733",
    "#999933",
    "#DDCC77",
    "#CC6677",
    "#882255",
    "#AA4499",
    "#E69F00",
    "#D55E00",
)
BUILT_IN_METHODS = (
    "ga",
    "ga_gd",
    "ga_kl",
    "random_labels",
    "adversarial",
    "ga_gd_ood",
    "ga_kl_ood",
    "memflex",
    "npo",
    "npo_gd",
    "simnpo",
)
REFERENCES = {"vanilla": "#777777", "retrain": "#000000"}  # models compared with, not methods
SEED_STYLES = ("-", "--", ":", "-.")

# The three success bars (Tables 2-4's columns), in colours of their own.
SUCCESS_COLOURS = {"unlearn_success": "#CC6677", "retention_success": "#44AA99", "avg_success": "#332288"}

RC: dict[str, Any] = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "figure.titlesize": 9,
    "text.parse_math": False,  # run and method names are text: "$" is never mathtext
    "pdf.fonttype": 42,  # TrueType in PDFs: text stays text (journals ask for it)
    "svg.fonttype": "none",
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def method_colours(labels: Iterable[str]) -> dict[str, str]:
    """A colour per method label: a built-in method's own (the same in every figure and
    run), grey for vanilla models, black for the retrain oracle; any other label the
    palette colour its name hashes to, or the next one not yet taken in this set."""
    colours: dict[str, str] = {}
    unknown = []
    for label in dict.fromkeys(labels):
        if label in BUILT_IN_METHODS:
            colours[label] = PALETTE[BUILT_IN_METHODS.index(label)]
        elif label.startswith("vanilla"):
            colours[label] = REFERENCES["vanilla"]
        elif label.startswith("retrain"):
            colours[label] = REFERENCES["retrain"]
        else:
            unknown.append(label)
    for label in unknown:
        start = int(hashlib.sha256(label.encode()).hexdigest()[:8], 16) % len(PALETTE)
        taken = set(colours.values())
        free = [PALETTE[(start + i) % len(PALETTE)] for i in range(len(PALETTE))]
        colours[label] = next((c for c in free if c not in taken), PALETTE[start])
    return colours


def figure_size(width: Width, height_ratio: float) -> tuple[float, float]:
    """(width, height) in inches for a figure of ``width`` columns."""
    inches = WIDTHS[width]
    return inches, inches * height_ratio


def legend_below(fig: Any, handles: list[Any], labels: list[str], width: Width, title: str | None = None) -> Any:
    """A figure legend under the axes and their tick labels (constrained layout makes
    room for it), never over the data."""
    size = float(RC["legend.fontsize"])  # points
    widest = max((len(label) for label in labels), default=1) * 0.55 * size + 3.5 * size  # text, handle, gap
    fitting = int(WIDTHS[width] * 72 * 0.95 // widest)
    columns = max(1, min(len(labels), fitting, 6))
    return fig.legend(handles, labels, loc="outside lower center", ncols=columns, frameon=False, title=title)


def wrapped(title: str, width: Width, size_key: str = "figure.titlesize") -> str:
    """``title`` broken into lines that fit the figure's width at its font size."""
    size = float(RC[size_key])
    return textwrap.fill(title, width=max(20, int(WIDTHS[width] * 72 * 0.95 / (0.55 * size))))
