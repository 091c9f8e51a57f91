"""The leaderboard as a person reads it in a terminal: a compact rich table of the
columns that decide (method, Unlearn, Retention, Avg Success, ≈best, the prompt-prefix
successes when measured) and where the full table is. A pipe or a file gets the full
markdown instead (:mod:`knowundo_bench.leaderboard.export`), as before."""

from __future__ import annotations

import math
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from knowundo_bench.leaderboard.aggregate import row_keys
from knowundo_bench.leaderboard.export import collapse_mark, render

SCOPE_COLUMNS = (("Unlearn↑", "unlearn_success"), ("Retention↑", "retention_success"), ("Avg↑", "avg_success"))


def stdout_is_terminal() -> bool:
    """Whether a person is reading stdout (not a pipe, a file or a test's capture)."""
    return sys.stdout.isatty()


def compact_cell(row: dict[str, Any], key: str) -> str:
    """``98.4 ± 1.2`` (one decimal); ``98.4 [92.7, 100.0]`` for an interval held within
    0-100; the mean alone without an interval."""
    value = row.get(key)
    if value is None:
        return "–"
    if math.isnan(value):
        return "nan"
    text = f"{value:.1f}"
    interval = row.get(f"{key}_ci95")
    if not interval or not all(end is not None and math.isfinite(end) for end in interval):
        return text
    if key in (row.get("ci95_unclipped") or {}):
        return f"{text} [{interval[0]:.1f}, {interval[1]:.1f}]"
    return f"{text} ± {(interval[1] - interval[0]) / 2:.1f}"


def prefix_columns(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(title, key) of each prompt prefix's Unlearn and Retention Success."""
    columns = []
    for key in row_keys(rows):
        scope, _, prefix = key.partition("@")
        if prefix and scope in ("unlearn_success", "retention_success") and not key.endswith("_ci95"):
            columns.append((f"{'U' if scope.startswith('unlearn') else 'R'}@{prefix}", key))
    return columns


def compact_table(rows: list[dict[str, Any]], full_table_command: str) -> Table:
    """The decisive columns of ``rows``; its caption says what ± is and how to get the rest."""
    several_runs = len({row.get("run") for row in rows}) > 1
    columns = [*SCOPE_COLUMNS, *prefix_columns(rows)]
    oracle = any(row.get("oracle_gap") is not None for row in rows)
    best = any(row.get("avg_success_not_below_best") is not None for row in rows)
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("Method", no_wrap=True)
    for title, key in columns:
        table.add_column(title, justify="right", overflow="fold", no_wrap="@" not in key)  # a prefix's title may wrap
    if oracle:
        table.add_column("oracle gap↓", justify="right")
    if best:
        table.add_column("≈best", justify="center")
    for row in rows:
        name = f"{row['run']}/{row['method']}" if several_runs else str(row.get("unit") or row["method"])
        if row.get("status") not in (None, "ok"):
            name += f" ({row['status']})"
        cells = [name + collapse_mark(row), *(compact_cell(row, key) for _, key in columns)]
        if oracle:
            gap = row.get("oracle_gap")
            cells.append("–" if gap is None else f"{gap:.1f}")
        if best:
            cells.append("✓" if row.get("avg_success_not_below_best") else "")
        table.add_row(*cells)
    notes = []
    if any((row.get("n_seeds") or 0) > 1 for row in rows):
        notes.append("± half-width of a 95% t-interval over seeds")
    if best:
        notes.append("≈best: Avg not significantly below the best method's")
    if any(row.get("collapsed") for row in rows):
        notes.append("collapsed: degenerate answers, a broken model rather than forgetting")
    notes.append(f"every column and footnote: {full_table_command}")
    table.caption = "; ".join(notes)
    table.caption_justify = "left"
    return table


def print_leaderboard(rows: list[dict[str, Any]], full_table_command: str, console: Console | None = None) -> None:
    """Print :func:`compact_table` to stdout (or ``console``)."""
    (console or Console(highlight=False)).print(compact_table(rows, full_table_command))


def show_leaderboard(rows: list[dict[str, Any]], full_table_command: str) -> None:
    """The compact table on a terminal, the full markdown anywhere else."""
    if stdout_is_terminal():
        print_leaderboard(rows, full_table_command)
        return
    sys.stdout.write(render(rows, "md"))
    sys.stdout.flush()
