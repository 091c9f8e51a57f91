"""Headless PNG plots of a results directory, made for a person to read at 100%.

* ``success.png`` — Unlearn, Retention and Avg Success per method (grouped bars; the
  layout of the paper's result tables at a glance).
* ``training_loss.png`` — each method's training loss per optimizer step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from knowundo_bench.harness.results import number
from knowundo_bench.leaderboard.aggregate import load_records, record_row

SUCCESS_BARS = (("unlearn_success", "Unlearn Succ. ↑"), ("retention_success", "Retention Succ. ↑"),
                ("avg_success", "Avg Succ. ↑"))


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


def plot_training_loss(records: list[dict[str, Any]], path: Path, title: str) -> int:
    """One line per method: training loss per optimizer step; returns the number of lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    lines = 0
    for record in records:
        losses = [number(v) for v in (record.get("training") or {}).get("step_losses") or []]
        if losses:
            ax.plot(range(1, len(losses) + 1), losses, marker="o", markersize=3, label=record["method"])
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


def plot_results(results_dir: Path, output_dir: Path | None = None) -> dict[Path, int]:
    """Write the plots; returns each file with the number of series (methods) in it."""
    records = load_records(results_dir)
    output_dir = output_dir or results_dir / "plots"
    output_dir.mkdir(parents=True, exist_ok=True)
    run = records[0].get("run", results_dir.name)
    success = output_dir / "success.png"
    loss = output_dir / "training_loss.png"
    return {
        success: plot_success([record_row(r) for r in records], success, f"{run}: scope success per method"),
        loss: plot_training_loss(records, loss, f"{run}: training loss per step"),
    }
