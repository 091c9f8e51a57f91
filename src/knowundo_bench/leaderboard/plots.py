"""Headless plots of one or more results directories, made for a person to read at 100%
(PNG by default; PDF or SVG for papers).

* ``success`` — Unlearn, Retention and Avg Success per method (grouped bars with 95%
  intervals over seeds as error bars; the layout of the paper's result tables).
* ``training_loss`` — each unit's training loss per optimizer step.
* ``curves`` (runs with ``eval.every_n_steps``) — Figure 4's view: Unlearn and Retention
  Success and both perplexities against optimizer steps, a line per method (the mean over
  seeds) with a band (the seeds' 95% interval, or their range for two seeds).
* ``prompt_prefixes`` (runs with ``eval.prompt_prefixes``) — Figure 5's view: each
  method's success without and with every prefix, as grouped bars.
* ``general_tasks`` (runs with ``eval.general``) — each method's general-task scores.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from knowundo_bench.leaderboard.aggregate import GENERAL_KEYS, leaderboard_rows, load_records, prefix_keys
from knowundo_bench.leaderboard.stats import geometric_interval, t_interval
from knowundo_bench.records.atomic import atomic_write_bytes
from knowundo_bench.records.lock import locked
from knowundo_bench.records.schema import ResultRecord

SUCCESS_BARS = (
    ("unlearn_success", "Unlearn Succ. ↑"),
    ("retention_success", "Retention Succ. ↑"),
    ("avg_success", "Avg Succ. ↑"),
)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path, dpi: int) -> None:
    """Render into memory, then write atomically (never half an image) with the umask's mode."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.removeprefix("."), dpi=dpi)
    _pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def row_name(row: dict[str, Any], several_runs: bool) -> str:
    return f"{row['run']}/{row['method']}" if several_runs else str(row["method"])


def error_bar(row: dict[str, Any], key: str) -> tuple[float, float]:
    """Distances from the mean to the ends of its 95% interval (0 without one)."""
    interval = row.get(f"{key}_ci95")
    if not interval or row.get(key) is None:
        return 0.0, 0.0
    return max(0.0, row[key] - interval[0]), max(0.0, interval[1] - row[key])


def plot_success(rows: list[dict[str, Any]], path: Path, title: str, dpi: int = 110) -> int:
    """Grouped bars of the three success scores with error bars; returns the number of rows drawn."""
    plt = _pyplot()
    several = len({r.get("run") for r in rows}) > 1
    rows = [r for r in rows if r["unlearn_success"] is not None]  # a failed seed leaves the others' mean
    width = 0.8 / len(SUCCESS_BARS)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(rows) + 2), 4.5), dpi=110)
    for offset, (key, label) in enumerate(SUCCESS_BARS):
        xs = [i + (offset - 1) * width for i in range(len(rows))]
        errors = [error_bar(r, key) for r in rows]
        bars = ax.bar(
            xs,
            [r[key] for r in rows],
            width,
            label=label,
            yerr=[[e[0] for e in errors], [e[1] for e in errors]],
            capsize=3,
        )
        ax.bar_label(bars, fmt="%.0f", fontsize=8, padding=2)
    ax.set_xticks(range(len(rows)), [row_name(r, several) for r in rows], rotation=20 if several else 0)
    ax.set_ylim(0, 115)
    ax.set_ylabel("success (%)")
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False)
    fig.tight_layout()
    _save(fig, path, dpi)
    return len(rows)


def plain_ticks(axis) -> None:
    """Tick labels as plain numbers: with ``text.parse_math`` off (see :func:`_plot_all`)
    a log axis's default labels ("$\\mathdefault{10^{1}}$") would print raw."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda value, _: ""))


def unit_name(record: ResultRecord, several_runs: bool) -> str:
    name = record.unit or record.method
    return f"{record.run}/{name}" if several_runs else name


def plot_training_loss(records: list[ResultRecord], path: Path, title: str, dpi: int = 110) -> int:
    """One line per unit: training loss per optimizer step; returns the number of lines."""
    plt = _pyplot()
    several = len({r.run for r in records}) > 1
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    lines = 0
    for record in records:
        losses = record.training.step_losses if record.training else []
        if losses:
            ax.plot(range(1, len(losses) + 1), losses, marker="o", markersize=3, label=unit_name(record, several))
            lines += 1
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (objective)")
    ax.set_yscale("symlog")
    plain_ticks(ax.yaxis)
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=7, ncol=2 if lines > 8 else 1)
    fig.tight_layout()
    _save(fig, path, dpi)
    return lines


CURVE_PANELS = (
    ("unlearn_success", "Unlearn Success (%) ↑", False),
    ("retention_success", "Retention Success (%) ↑", False),
    ("unlearn_ppl", "Unlearn perplexity ↑", True),
    ("retention_ppl", "Retention perplexity ↓", True),
)


def curve_groups(records: list[ResultRecord]) -> dict[str, list[ResultRecord]]:
    several = len({r.run for r in records}) > 1
    groups: dict[str, list[ResultRecord]] = {}
    for record in records:
        if record.curve:
            groups.setdefault(f"{record.run}/{record.method}" if several else record.method, []).append(record)
    return groups


def plot_curves(records: list[ResultRecord], path: Path, title: str, dpi: int = 110) -> int:
    """Scope metrics against optimizer steps: per method the mean over seeds and a band
    over them; returns the number of lines."""
    plt = _pyplot()
    groups = curve_groups(records)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), dpi=110, sharex=True)
    for ax, (key, label, log_scale) in zip(axes.flat, CURVE_PANELS, strict=True):
        for method, group in groups.items():
            steps = sorted({p.step for r in group for p in r.curve or []})
            by_step = [[getattr(p, key) for r in group for p in r.curve or [] if p.step == s] for s in steps]
            means, lows, highs = [], [], []
            for values in by_step:
                mean, interval = (geometric_interval if log_scale else t_interval)(values)
                means.append(mean)
                band = interval or ((min(values), max(values)) if len(values) > 1 else (mean, mean))
                lows.append(band[0])
                highs.append(band[1])
            (line,) = ax.plot(steps, means, marker="o", markersize=3, label=method)
            if len(group) > 1:
                ax.fill_between(steps, lows, highs, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if log_scale:
            ax.set_yscale("log")
            plain_ticks(ax.yaxis)
        else:
            ax.set_ylim(-5, 105)
    for ax in axes[1]:
        ax.set_xlabel("optimizer step")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(max(len(labels), 1), 6), frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    _save(fig, path, dpi)
    return len(groups)


def plot_prompt_prefixes(rows: list[dict[str, Any]], path: Path, title: str, dpi: int = 110) -> int:
    """Unlearn and Retention Success per method without and with each prompt prefix
    (means over seeds); returns the number of methods drawn."""
    plt = _pyplot()
    several = len({r.get("run") for r in rows}) > 1
    prefixes = list(
        dict.fromkeys(key.split("@", 1)[1] for r in rows for key in r if "@" in key and not key.endswith("_ci95"))
    )
    measured = [r for r in rows if any(r.get(prefix_keys(p)[0]) is not None for p in prefixes)]
    settings = ["no prefix", *prefixes]
    width = 0.8 / len(settings)
    fig, axes = plt.subplots(1, 2, figsize=(max(9.0, 2.2 * len(measured) + 3), 4.8), dpi=110, sharey=True)
    scopes = (("unlearn", "Unlearn Success (%) ↑", 0), ("retention", "Retention Success (%) ↑", 1))
    for ax, (scope, label, which) in zip(axes, scopes, strict=True):
        for offset, setting in enumerate(settings):
            key = f"{scope}_success" if setting == "no prefix" else prefix_keys(setting)[which]
            xs = [i + (offset - (len(settings) - 1) / 2) * width for i in range(len(measured))]
            ax.bar(xs, [r.get(key) or 0.0 for r in measured], width, label=setting)
        ax.set_xticks(range(len(measured)), [row_name(r, several) for r in measured], rotation=20, ha="right")
        ax.set_ylim(0, 105)
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("success (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, title="system prompt", loc="lower center", ncol=len(labels), frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    _save(fig, path, dpi)
    return len(measured)


def plot_general(rows: list[dict[str, Any]], path: Path, title: str, dpi: int = 110) -> int:
    """Each method's general-task scores (grouped bars, error bars over seeds)."""
    plt = _pyplot()
    several = len({r.get("run") for r in rows}) > 1
    measured = [r for r in rows if r.get("general_avg") is not None]
    tasks = [key for key in GENERAL_KEYS if any(r.get(key) is not None for r in measured)]
    width = 0.8 / max(len(measured), 1)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(tasks) * max(len(measured), 1) / 2 + 3), 4.5), dpi=110)
    for offset, row in enumerate(measured):
        xs = [i + (offset - (len(measured) - 1) / 2) * width for i in range(len(tasks))]
        errors = [error_bar(row, key) for key in tasks]
        ax.bar(
            xs,
            [row.get(key) or 0.0 for key in tasks],
            width,
            label=row_name(row, several),
            yerr=[[e[0] for e in errors], [e[1] for e in errors]],
            capsize=2,
        )
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, path, dpi)
    return len(measured)


def plot_results(
    results_dirs: Path | Sequence[Path],
    output_dir: Path | None = None,
    *,
    image_format: str = "png",
    dpi: int = 110,
) -> dict[Path, int]:
    """Write the plots; returns each file with the number of series (methods) in it."""
    directories = [results_dirs] if isinstance(results_dirs, Path) else list(results_dirs)
    records = [record for directory in directories for record in load_records(directory)]
    rows = leaderboard_rows(directories)
    output_dir = output_dir or directories[0] / "plots"
    with locked(output_dir, "plot"):  # one command writes a folder at a time
        return _plot_all(records, rows, directories, output_dir, image_format, dpi)


def _plot_all(
    records: list[ResultRecord],
    rows: list[dict[str, Any]],
    directories: list[Path],
    output_dir: Path,
    image_format: str,
    dpi: int,
) -> dict[Path, int]:
    runs = list(dict.fromkeys(r.run or directories[0].name for r in records))
    name = " vs ".join(str(run) for run in runs)

    def target(stem: str) -> Path:
        return output_dir / f"{stem}.{image_format}"

    plt = _pyplot()
    with plt.rc_context({"text.parse_math": False}):  # run and method names are text: "$" is never mathtext
        written = {
            target("success"): plot_success(rows, target("success"), f"{name}: scope success per method", dpi),
            target("training_loss"): plot_training_loss(
                records, target("training_loss"), f"{name}: training loss per step", dpi
            ),
        }
        if any(r.curve for r in records):
            written[target("curves")] = plot_curves(
                records, target("curves"), f"{name}: scope metrics during unlearning", dpi
            )
        if any(r.metrics and r.metrics.prompt_prefixes for r in records):
            written[target("prompt_prefixes")] = plot_prompt_prefixes(
                rows, target("prompt_prefixes"), f"{name}: success with and without a system prompt", dpi
            )
        if any(row.get("general_avg") is not None for row in rows):
            written[target("general_tasks")] = plot_general(
                rows, target("general_tasks"), f"{name}: general tasks", dpi
            )
    return written
