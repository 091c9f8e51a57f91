"""Headless PNG plots of a results directory, made for a person to read at 100%.

* ``success.png`` — Unlearn, Retention and Avg Success per method (grouped bars; the
  layout of the paper's result tables at a glance).
* ``training_loss.png`` — each method's training loss per optimizer step.
* ``curves.png`` (runs with ``eval.every_n_steps``) — Figure 4's view: Unlearn and
  Retention Success and both perplexities against optimizer steps, a line per method.
* ``prompt_prefixes.png`` (runs with ``eval.prompt_prefixes``) — Figure 5's view: each
  method's success without and with every prefix, as grouped bars.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from knowundo_bench.harness.records.schema import Metrics, PrefixedMetrics, ResultRecord
from knowundo_bench.leaderboard.aggregate import load_records, record_row

SUCCESS_BARS = (
    ("unlearn_success", "Unlearn Succ. ↑"),
    ("retention_success", "Retention Succ. ↑"),
    ("avg_success", "Avg Succ. ↑"),
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_success(rows: list[dict[str, Any]], path: Path, title: str) -> int:
    """Grouped bars of the three success scores; returns the number of methods drawn."""
    plt = _pyplot()
    rows = [r for r in rows if r["status"] == "ok" and r["unlearn_success"] is not None]
    width = 0.8 / len(SUCCESS_BARS)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(rows) + 2), 4.5), dpi=110)
    for offset, (key, label) in enumerate(SUCCESS_BARS):
        xs = [i + (offset - 1) * width for i in range(len(rows))]
        bars = ax.bar(xs, [r[key] for r in rows], width, label=label)
        ax.bar_label(bars, fmt="%.0f", fontsize=8, padding=2)
    ax.set_xticks(range(len(rows)), [r["method"] for r in rows])
    ax.set_ylim(0, 110)
    ax.set_ylabel("success (%)")
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return len(rows)


def plot_training_loss(records: list[ResultRecord], path: Path, title: str) -> int:
    """One line per method: training loss per optimizer step; returns the number of lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    lines = 0
    for record in records:
        losses = record.training.step_losses if record.training else []
        if losses:
            ax.plot(range(1, len(losses) + 1), losses, marker="o", markersize=3, label=record.method)
            lines += 1
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (objective)")
    ax.set_yscale("symlog")
    ax.set_title(title)
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return lines


CURVE_PANELS = (
    ("unlearn_success", "Unlearn Success (%) ↑", False),
    ("retention_success", "Retention Success (%) ↑", False),
    ("unlearn_ppl", "Unlearn perplexity ↑", True),
    ("retention_ppl", "Retention perplexity ↓", True),
)


def plot_curves(records: list[ResultRecord], path: Path, title: str) -> int:
    """Scope metrics against optimizer steps, one line per method; returns the number of lines."""
    plt = _pyplot()
    curves = [(r.method, r.curve) for r in records if r.curve]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), dpi=110, sharex=True)
    for ax, (key, label, log_scale) in zip(axes.flat, CURVE_PANELS, strict=True):
        for method, curve in curves:
            ax.plot([p.step for p in curve], [getattr(p, key) for p in curve], marker="o", markersize=3, label=method)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if log_scale:
            ax.set_yscale("log")
        else:
            ax.set_ylim(-5, 105)
    for ax in axes[1]:
        ax.set_xlabel("optimizer step")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return len(curves)


def plot_prompt_prefixes(records: list[ResultRecord], path: Path, title: str) -> int:
    """Unlearn and Retention Success per method without and with each prompt prefix;
    returns the number of methods drawn."""
    plt = _pyplot()
    measured = [(r.method, r.metrics) for r in records if r.metrics and r.metrics.prompt_prefixes]
    prefixes = list(dict.fromkeys(name for _, metrics in measured for name in metrics.prompt_prefixes))
    settings = ["no prefix", *prefixes]
    width = 0.8 / len(settings)
    fig, axes = plt.subplots(1, 2, figsize=(max(9.0, 2.2 * len(measured) + 3), 4.8), dpi=110, sharey=True)
    for ax, (scope, label) in zip(
        axes, (("unlearn", "Unlearn Success (%) ↑"), ("retention", "Retention Success (%) ↑")), strict=True
    ):
        for offset, setting in enumerate(settings):
            values = []
            for _, metrics in measured:
                reading: Metrics | PrefixedMetrics = (
                    metrics if setting == "no prefix" else metrics.prompt_prefixes.get(setting, PrefixedMetrics())
                )
                values.append(getattr(reading, scope).success or 0.0)
            xs = [i + (offset - (len(settings) - 1) / 2) * width for i in range(len(measured))]
            ax.bar(xs, values, width, label=setting)
        ax.set_xticks(range(len(measured)), [method for method, _ in measured], rotation=20, ha="right")
        ax.set_ylim(0, 105)
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("success (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, title="system prompt", loc="lower center", ncol=len(labels), frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return len(measured)


def plot_results(results_dir: Path, output_dir: Path | None = None) -> dict[Path, int]:
    """Write the plots; returns each file with the number of series (methods) in it."""
    records = load_records(results_dir)
    output_dir = output_dir or results_dir / "plots"
    output_dir.mkdir(parents=True, exist_ok=True)
    run = records[0].run or results_dir.name
    success = output_dir / "success.png"
    loss = output_dir / "training_loss.png"
    written = {
        success: plot_success([record_row(r) for r in records], success, f"{run}: scope success per method"),
        loss: plot_training_loss(records, loss, f"{run}: training loss per step"),
    }
    if any(r.curve for r in records):
        curves = output_dir / "curves.png"
        written[curves] = plot_curves(records, curves, f"{run}: scope metrics during unlearning")
    if any(r.metrics and r.metrics.prompt_prefixes for r in records):
        prefixes = output_dir / "prompt_prefixes.png"
        written[prefixes] = plot_prompt_prefixes(records, prefixes, f"{run}: success with and without a system prompt")
    return written
