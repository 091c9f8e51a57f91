"""One self-contained HTML page of results (issue 29): the leaderboard with its
significance marks, the plots, the efficiency view and each run's identity.

Everything is inline (CSS in a ``<style>``, plots as ``data:`` PNGs, no script), so the
page opens without a network and can be mailed or attached as one file. Every text that
comes from records (labels, specs) is HTML-escaped: a results folder may be someone
else's."""

from __future__ import annotations

import base64
import html
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from knowundo_bench import __version__
from knowundo_bench.core.errors import InputError
from knowundo_bench.leaderboard.aggregate import leaderboard_rows
from knowundo_bench.leaderboard.dataset import run_identities
from knowundo_bench.leaderboard.efficiency import efficiency_rows
from knowundo_bench.leaderboard.export import (
    Column,
    efficiency_columns,
    efficiency_markdown,
    footer,
    markdown_columns,
    table_cells,
    tag_memory,
)
from knowundo_bench.records.atomic import atomic_write_text

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1400px;
       padding: 0 1em; color: #1b1b1b; }
.wide { overflow-x: auto; max-width: 100%; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; font-variant-numeric: tabular-nums; font-size: 0.9em; }
th, td { padding: 0.3em 0.5em; border-bottom: 1px solid #e4e4e4; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f3f3f3; }
.note { color: #555; font-size: 0.9em; max-width: 60em; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
"""


def html_table(columns: list[Column], rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for title, _, _ in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(text)}</td>" for text in cells) + "</tr>"
        for cells in table_cells(columns, rows)
    )
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def notes(lines: list[str]) -> str:
    return "".join(f'<p class="note">{html.escape(line)}</p>' for line in lines if line.strip())


def figures(directories: list[Path]) -> list[tuple[str, str]]:
    """Each plot as (name, base64 PNG), drawn by the same code as ``knowundo-bench plot``."""
    from knowundo_bench.leaderboard.plots import plot_results

    with tempfile.TemporaryDirectory(prefix="knowundo-report-") as folder:
        written = plot_results(directories, Path(folder), image_format="png", dpi=110)
        return [(path.stem, base64.b64encode(path.read_bytes()).decode("ascii")) for path in sorted(written)]


def render_report(directories: Sequence[Path]) -> str:
    folders = list(directories)
    rows = leaderboard_rows(folders)
    if not rows:
        raise InputError(f"no finished records in {', '.join(map(str, folders))}: nothing to report")
    scope_columns, shown = tag_memory(markdown_columns(rows), rows)
    efficiency = [row for folder in folders for row in efficiency_rows(folder)]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>knowundo-bench report: {html.escape(', '.join(f.name for f in folders))}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>knowundo-bench report: {html.escape(', '.join(f.name for f in folders))}</h1>",
        f'<p class="note">knowundo-bench {html.escape(__version__)}; {len(rows)} rows from {len(folders)} '
        "results folder(s). Success in %, mean ± half-width of the 95% interval over seeds where a row has "
        "several.</p>",
        "<h2>Leaderboard</h2>",
        html_table(scope_columns, shown),
        notes(footer(rows)),
    ]
    plots = figures(folders)
    if plots:
        parts.append("<h2>Plots</h2>")
        for name, data in plots:
            parts.append(
                f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(name)}</figcaption></figure>"
            )
    if efficiency:
        columns, shown_efficiency = tag_memory(efficiency_columns(efficiency), efficiency)
        parts += [
            "<h2>Efficiency (Table 5)</h2>",
            html_table(columns, shown_efficiency),
            notes([line for line in efficiency_markdown(efficiency).splitlines() if not line.startswith("|")]),
        ]
    parts.append("<h2>Runs</h2>")
    for run in run_identities(folders):
        parts.append(f"<h3>{html.escape(run['folder'])}</h3>")
        parts.append(f"<pre>{html.escape(json.dumps(run, indent=2, sort_keys=False, default=str))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(directories: Sequence[Path], output: Path) -> None:
    if output.is_dir():
        raise InputError(f"--output: {output} is a folder; give a file name such as report.html")
    text = render_report(directories)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output, text)
