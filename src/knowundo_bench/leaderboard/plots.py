"""Headless plots of one or more results directories, made for a person to read at 100%
and for a paper's single or double column (PNG by default; PDF or SVG for papers; the look
is :mod:`knowundo_bench.leaderboard.figure_style`'s: legends below the axes, a colour per
method, bars and bands of success held within 0-100).

* ``success`` — Unlearn, Retention and Avg Success per method (grouped bars with 95%
  intervals over seeds as error bars; the layout of the paper's result tables).
* ``training_loss`` — each unit's training loss per optimizer step (a colour per method,
  a line style per seed).
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
from typing import Any, cast

from knowundo_bench.core.errors import InputError
from knowundo_bench.leaderboard.aggregate import GENERAL_KEYS, leaderboard_rows, load_records, prefix_keys
from knowundo_bench.leaderboard.figure_style import (
    PALETTE,
    RC,
    SEED_STYLES,
    SUCCESS_COLOURS,
    WIDTHS,
    Width,
    figure_size,
    legend_below,
    method_colours,
    wrapped,
)
from knowundo_bench.leaderboard.stats import geometric_interval, t_interval
from knowundo_bench.records.atomic import atomic_write_bytes
from knowundo_bench.records.lock import locked
from knowundo_bench.records.schema import ResultRecord

SUCCESS_BARS = (
    ("unlearn_success", "Unlearn Succ. ↑"),
    ("retention_success", "Retention Succ. ↑"),
    ("avg_success", "Avg Succ. ↑"),
)
PERCENT = (0.0, 100.0)  # where a success rate, a share or a task accuracy lives


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


def error_bar(row: dict[str, Any], key: str, bounds: tuple[float, float] = PERCENT) -> tuple[float, float]:
    """Distances from the mean to the ends of its 95% interval, the ends held within
    ``bounds`` (0 without an interval)."""
    interval = row.get(f"{key}_ci95")
    value = row.get(key)
    if not interval or value is None or None in interval:
        return 0.0, 0.0
    low, high = max(bounds[0], interval[0]), min(bounds[1], interval[1])
    return max(0.0, value - low), max(0.0, high - value)


def tick_labels(ax: Any, names: list[str], width: Width) -> None:
    """Names under the bars, slanted when they would not fit side by side."""
    room = WIDTHS[width] * 16  # about how many 7 pt characters fit across
    slanted = sum(len(name) + 2 for name in names) > room
    ax.set_xticks(range(len(names)), names, rotation=30 if slanted else 0, ha="right" if slanted else "center")


def plot_success(rows: list[dict[str, Any]], path: Path, title: str, dpi: int = 110, width: Width = "double") -> int:
    """Grouped bars of the three success scores with error bars; returns the number of rows drawn."""
    plt = _pyplot()
    several = len({r.get("run") for r in rows}) > 1
    rows = [r for r in rows if r["unlearn_success"] is not None]  # a failed seed leaves the others' mean
    bar_width = 0.8 / len(SUCCESS_BARS)
    fig, ax = plt.subplots(figsize=figure_size(width, 0.62), layout="constrained")
    intervals = any(r.get(f"{key}_ci95") for r in rows for key, _ in SUCCESS_BARS)
    for offset, (key, label) in enumerate(SUCCESS_BARS):
        xs = [i + (offset - 1) * bar_width for i in range(len(rows))]
        errors = [error_bar(r, key) for r in rows]
        bars = ax.bar(
            xs,
            [r[key] for r in rows],
            bar_width,
            label=label,
            color=SUCCESS_COLOURS[key],
            yerr=[[e[0] for e in errors], [e[1] for e in errors]] if intervals else None,
            capsize=2,
            error_kw={"linewidth": 0.8},
        )
        if not intervals and width == "double":
            ax.bar_label(bars, fmt="%.0f", fontsize=6, padding=1)
    names = [row_name(r, several) + ("\n(collapsed)" if r.get("collapsed") else "") for r in rows]
    tick_labels(ax, names, width)  # a collapsed model's Unlearn Success is no forgetting: say so under it
    ax.set_ylim(0, 108)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("success (%)")
    ax.set_title(wrapped(title, width, "axes.titlesize"))
    ax.grid(axis="y", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    legend_below(fig, handles, labels, width)
    _save(fig, path, dpi)
    return len(rows)


def plain_ticks(axis) -> None:
    """Tick labels as plain numbers: with ``text.parse_math`` off (see :func:`_plot_all`)
    a log axis's default labels ("$\\mathdefault{10^{1}}$") would print raw."""
    from matplotlib.ticker import FuncFormatter

    axis.axes.autoscale_view()
    low, high = axis.get_view_interval()
    within_a_decade = 0 < low and high / low < 10  # no power of ten, or one: label the minor ticks too
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:g}" if within_a_decade else ""))


def step_axis(ax: Any) -> None:
    """Optimizer steps are whole numbers."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def style_handles(colours: dict[str, str], styles: dict[str, Any], markers: dict[str, str]) -> tuple[list, list]:
    """Legend entries: a coloured line per method, then a grey line per seed style and a
    grey marker per run when there are several."""
    from matplotlib.lines import Line2D

    handles, labels = [], []
    for name, colour in colours.items():
        handles.append(Line2D([], [], color=colour))
        labels.append(name)
    for name, style in styles.items() if len(styles) > 1 else ():
        handles.append(Line2D([], [], color="#555555", linestyle=style))
        labels.append(name)
    for name, marker in markers.items() if len(markers) > 1 else ():
        handles.append(Line2D([], [], color="#555555", marker=marker, linestyle=""))
        labels.append(name)
    return handles, labels


RUN_MARKERS = ("o", "s", "^", "D", "v")


def plot_training_loss(
    records: list[ResultRecord],
    path: Path,
    title: str,
    dpi: int = 110,
    width: Width = "double",
    colours: dict[str, str] | None = None,
) -> int:
    """Training loss per optimizer step: a colour per method, a line style per seed (and
    a marker per run when several are compared); returns the number of lines."""
    plt = _pyplot()
    trained = [r for r in records if r.training and r.training.step_losses]
    colours = colours or method_colours(r.method for r in trained)
    seeds = sorted({r.seed for r in trained}, key=lambda s: (s is None, s or 0))
    styles = {f"seed {seed}": SEED_STYLES[i % len(SEED_STYLES)] for i, seed in enumerate(seeds)}
    runs = list(dict.fromkeys(str(r.run) for r in trained))
    markers = {run: RUN_MARKERS[i % len(RUN_MARKERS)] for i, run in enumerate(runs)}
    fig, ax = plt.subplots(figsize=figure_size(width, 0.62), layout="constrained")
    for record in trained:
        losses = record.training.step_losses if record.training else []
        ax.plot(
            range(1, len(losses) + 1),
            losses,
            color=colours[record.method],
            linestyle=styles[f"seed {record.seed}"],
            marker=markers[str(record.run)] if len(runs) > 1 else None,
            markersize=3,
            linewidth=1.0,
        )
    ax.axhline(0, color="grey", linewidth=0.6)
    ax.set_xlabel("optimizer step")
    step_axis(ax)
    ax.set_ylabel("training loss (objective)")
    ax.set_yscale("symlog")
    plain_ticks(ax.yaxis)
    ax.set_title(wrapped(title, width, "axes.titlesize"))
    shown = {method: colours[method] for method in dict.fromkeys(r.method for r in trained)}
    handles, labels = style_handles(shown, styles, markers)
    legend_below(fig, handles, labels, width)
    _save(fig, path, dpi)
    return len(trained)


CURVE_PANELS = (
    ("unlearn_success", "Unlearn Success (%) ↑", False),
    ("retention_success", "Retention Success (%) ↑", False),
    ("unlearn_ppl", "Unlearn perplexity ↑", True),
    ("retention_ppl", "Retention perplexity ↓", True),
)


def curve_groups(records: list[ResultRecord]) -> dict[tuple[str, str], list[ResultRecord]]:
    """Records with curves by (run, method)."""
    groups: dict[tuple[str, str], list[ResultRecord]] = {}
    for record in records:
        if record.curve:
            groups.setdefault((str(record.run), record.method), []).append(record)
    return groups


def curve_band(values: list[float], log_scale: bool) -> tuple[float, float, float]:
    """The mean over seeds at one step and its band: the 95% interval (geometric for
    perplexities), or the range for two seeds; a success band held within 0-100."""
    mean, interval = (geometric_interval if log_scale else t_interval)(values)
    low, high = interval or ((min(values), max(values)) if len(values) > 1 else (mean, mean))
    if not log_scale:
        low, high = max(PERCENT[0], low), min(PERCENT[1], high)
    return mean, low, high


def plot_curves(
    records: list[ResultRecord],
    path: Path,
    title: str,
    dpi: int = 110,
    width: Width = "double",
    colours: dict[str, str] | None = None,
) -> int:
    """Scope metrics against optimizer steps: per method the mean over seeds and a band
    over them; returns the number of lines."""
    plt = _pyplot()
    groups = curve_groups(records)
    colours = colours or method_colours(method for _, method in groups)
    runs = list(dict.fromkeys(run for run, _ in groups))
    styles = {run: SEED_STYLES[i % len(SEED_STYLES)] for i, run in enumerate(runs)}
    fig, axes = plt.subplots(
        2, 2, figsize=figure_size(width, 0.9 if width == "single" else 0.7), sharex=True, layout="constrained"
    )
    for ax, (key, label, log_scale) in zip(axes.flat, CURVE_PANELS, strict=True):
        for (run, method), group in groups.items():
            steps = sorted({p.step for r in group for p in r.curve or []})
            bands = [
                curve_band([getattr(p, key) for r in group for p in r.curve or [] if p.step == s], log_scale)
                for s in steps
            ]
            colour = colours[method]
            ax.plot(steps, [b[0] for b in bands], color=colour, linestyle=styles[run], marker="o", markersize=2)
            if len(group) > 1:
                ax.fill_between(steps, [b[1] for b in bands], [b[2] for b in bands], color=colour, alpha=0.2, lw=0)
        ax.set_title(label)  # a title, not a y label: four long labels collide at a single column's width
        ax.grid(alpha=0.3)
        if log_scale:
            ax.set_yscale("log")
            plain_ticks(ax.yaxis)
        else:
            ax.set_ylim(-3, 103)
    for ax in axes[1]:
        ax.set_xlabel("optimizer step")
        step_axis(ax)
    shown = {method: colours[method] for method in dict.fromkeys(method for _, method in groups)}
    handles, labels = style_handles(shown, styles, {})
    legend_below(fig, handles, labels, width)
    fig.suptitle(wrapped(title, width))
    _save(fig, path, dpi)
    return len(groups)


def plot_prompt_prefixes(
    rows: list[dict[str, Any]], path: Path, title: str, dpi: int = 110, width: Width = "double"
) -> int:
    """Unlearn and Retention Success per method without and with each prompt prefix
    (means over seeds, error bars their 95% intervals); returns the number of methods drawn."""
    plt = _pyplot()
    several = len({r.get("run") for r in rows}) > 1
    prefixes = list(
        dict.fromkeys(key.split("@", 1)[1] for r in rows for key in r if "@" in key and not key.endswith("_ci95"))
    )
    measured = [r for r in rows if any(r.get(prefix_keys(p)[0]) is not None for p in prefixes)]
    settings = ["no prefix", *prefixes]
    bar_width = 0.8 / len(settings)
    fig, axes = plt.subplots(
        2 if width == "single" else 1,
        1 if width == "single" else 2,
        figsize=figure_size(width, 1.2 if width == "single" else 0.5),
        sharey=True,
        layout="constrained",
    )
    scopes = (("unlearn", "Unlearn Success (%) ↑", 0), ("retention", "Retention Success (%) ↑", 1))
    colours = ["#777777", *PALETTE]
    for ax, (scope, label, which) in zip(axes, scopes, strict=True):
        for offset, setting in enumerate(settings):
            key = f"{scope}_success" if setting == "no prefix" else prefix_keys(setting)[which]
            xs = [i + (offset - (len(settings) - 1) / 2) * bar_width for i in range(len(measured))]
            errors = [error_bar(r, key) for r in measured]
            ax.bar(
                xs,
                [r.get(key) or 0.0 for r in measured],
                bar_width,
                label=setting,
                color=colours[offset % len(colours)],
                yerr=[[e[0] for e in errors], [e[1] for e in errors]],
                capsize=2,
                error_kw={"linewidth": 0.8},
            )
        tick_labels(ax, [row_name(r, several) for r in measured], width)
        ax.set_ylim(0, 105)
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("success (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    legend_below(fig, handles, labels, width, title="system prompt")
    fig.suptitle(wrapped(title, width))
    _save(fig, path, dpi)
    return len(measured)


def plot_general(
    rows: list[dict[str, Any]],
    path: Path,
    title: str,
    dpi: int = 110,
    width: Width = "double",
    colours: dict[str, str] | None = None,
) -> int:
    """Each method's general-task scores (grouped bars, error bars over seeds)."""
    plt = _pyplot()
    several = len({r.get("run") for r in rows}) > 1
    measured = [r for r in rows if r.get("general_avg") is not None]
    colours = colours or method_colours(r["method"] for r in measured)
    tasks = [key for key in GENERAL_KEYS if any(r.get(key) is not None for r in measured)]
    bar_width = 0.8 / max(len(measured), 1)
    fig, ax = plt.subplots(figsize=figure_size(width, 0.62), layout="constrained")
    for offset, row in enumerate(measured):
        xs = [i + (offset - (len(measured) - 1) / 2) * bar_width for i in range(len(tasks))]
        errors = [error_bar(row, key) for key in tasks]
        ax.bar(
            xs,
            [row.get(key) or 0.0 for key in tasks],
            bar_width,
            label=row_name(row, several),
            color=colours[row["method"]],
            yerr=[[e[0] for e in errors], [e[1] for e in errors]],
            capsize=2,
            error_kw={"linewidth": 0.8},
        )
    tick_labels(ax, tasks, width)
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 100)
    ax.set_title(wrapped(title, width, "axes.titlesize"))
    ax.grid(axis="y", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    legend_below(fig, handles, labels, width)
    _save(fig, path, dpi)
    return len(measured)


def plot_results(
    results_dirs: Path | Sequence[Path],
    output_dir: Path | None = None,
    *,
    image_format: str = "png",
    dpi: int = 110,
    width: str = "double",
) -> dict[Path, int]:
    """Write the plots at ``width`` ("single" or "double" column); returns each file with
    the number of series (methods) in it."""
    if width not in WIDTHS:
        raise InputError(f"width: {width!r} is not one of {', '.join(WIDTHS)}")
    directories = [results_dirs] if isinstance(results_dirs, Path) else list(results_dirs)
    records = [record for directory in directories for record in load_records(directory)]
    rows = leaderboard_rows(directories)
    output_dir = output_dir or directories[0] / "plots"
    with locked(output_dir, "plot"):  # one command writes a folder at a time
        return _plot_all(records, rows, directories, output_dir, image_format, dpi, cast(Width, width))


def _plot_all(
    records: list[ResultRecord],
    rows: list[dict[str, Any]],
    directories: list[Path],
    output_dir: Path,
    image_format: str,
    dpi: int,
    width: Width,
) -> dict[Path, int]:
    runs = list(dict.fromkeys(r.run or directories[0].name for r in records))
    name = " vs ".join(str(run) for run in runs)
    colours = method_colours(r.method for r in records)  # one method, one colour in every figure

    def target(stem: str) -> Path:
        return output_dir / f"{stem}.{image_format}"

    plt = _pyplot()
    with plt.rc_context(RC):
        written = {
            target("success"): plot_success(rows, target("success"), f"{name}: scope success", dpi, width),
            target("training_loss"): plot_training_loss(
                records, target("training_loss"), f"{name}: training loss per step", dpi, width, colours
            ),
        }
        if any(r.curve for r in records):
            written[target("curves")] = plot_curves(
                records, target("curves"), f"{name}: scope metrics during unlearning", dpi, width, colours
            )
        if any(r.metrics and r.metrics.prompt_prefixes for r in records):
            written[target("prompt_prefixes")] = plot_prompt_prefixes(
                rows, target("prompt_prefixes"), f"{name}: success with and without a system prompt", dpi, width
            )
        if any(row.get("general_avg") is not None for row in rows):
            written[target("general_tasks")] = plot_general(
                rows, target("general_tasks"), f"{name}: general tasks", dpi, width, colours
            )
    return written
