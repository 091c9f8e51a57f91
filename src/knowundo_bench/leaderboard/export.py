"""Leaderboard renderers. Markdown follows the paper's table layout (Tables 2-4):
Unlearn (Succ↑ PPL↑ ROUGE-L↓) | Retention (Succ↑ PPL↓ ROUGE-L↑) | Avg Succ↑, plus
time and peak memory per training step (Table 5)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from typing import Any

from knowundo_bench.harness.records.files import json_safe
from knowundo_bench.leaderboard.aggregate import row_keys
from knowundo_bench.leaderboard.stats import BOOTSTRAP_NOTE, INTERVAL_NOTE

PPL_CEILING = 1e10
Column = tuple[str, str, Callable[[Any], str]]  # title, row key, formatter


def fmt_number(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    if math.isnan(value):
        return "nan"
    return f"{value:.{digits}f}"


def fmt_ppl(value: float | None) -> str:
    """Perplexity as the paper prints it: ``>1e10`` past 10^10, powers of ten past 10^4."""
    if value is None:
        return "–"
    if math.isnan(value):
        return "nan"
    if value > PPL_CEILING:
        return ">1e10"
    if value >= 1e4:
        return f"{value:.1e}"
    return f"{value:.2f}"


MARKDOWN_COLUMNS: list[Column] = [
    ("Method", "method", str),
    ("Unlearn Succ↑", "unlearn_success", fmt_number),
    ("Unlearn PPL↑", "unlearn_ppl", fmt_ppl),
    ("Unlearn ROUGE-L↓", "unlearn_rouge_l", fmt_number),
    ("Retention Succ↑", "retention_success", fmt_number),
    ("Retention PPL↓", "retention_ppl", fmt_ppl),
    ("Retention ROUGE-L↑", "retention_rouge_l", fmt_number),
    ("Avg Succ↑", "avg_success", fmt_number),
    ("s/step", "sec_per_step", lambda v: fmt_number(v, 3)),
    ("peak GB", "peak_mem_gb", fmt_number),
]


GENERAL_COLUMNS: list[Column] = [
    ("MMLU", "mmlu", fmt_number),
    ("ARC", "arc_challenge", fmt_number),
    ("TruthfulQA", "truthfulqa_mc2", fmt_number),
    ("SIQA", "social_iqa", fmt_number),
    ("RACE", "race", fmt_number),
    ("General Avg", "general_avg", fmt_number),
]


def markdown_columns(rows: list[dict[str, Any]]) -> list[Column]:
    """The paper's columns, then per prompt prefix the successes under it (Finding 2),
    then the general tasks (Tables 2-4's right half) when any row has them."""
    columns = list(MARKDOWN_COLUMNS)
    if rows and all(row.get("unit") for row in rows):  # --per-seed: a row per unit
        columns[0] = ("Unit", "unit", str)
    if len({row.get("run") for row in rows}) > 1:
        columns.insert(0, ("Run", "run", str))
    for key in row_keys(rows):
        if "@" in key and not key.endswith("_ci95"):
            scope, prefix = key.split("@", 1)
            columns.append(
                (f"{'Unlearn' if scope.startswith('unlearn') else 'Retention'} Succ@{prefix}", key, fmt_number)
            )
    if any(row.get("general_avg") is not None for row in rows):
        columns += GENERAL_COLUMNS
    if any((row.get("n_seeds") or 0) > 1 for row in rows):
        columns.append(("n", "n_seeds", lambda v: "–" if v is None else str(v)))
    if any(row.get("avg_success_not_below_best") is not None for row in rows):
        columns.append(("≈best", "avg_success_not_below_best", lambda v: "" if v is None else ("✓" if v else "")))
    return columns


def cell(row: dict[str, Any], key: str, fmt: Callable[[Any], str]) -> str:
    """A value, as ``mean ± half-width`` when the row has a 95% interval for it (the
    perplexities show their geometric mean only)."""
    text = fmt(row.get(key))
    interval = row.get(f"{key}_ci95")
    if interval and fmt is not fmt_ppl and all(v is not None and math.isfinite(v) for v in interval):
        text += f" ± {fmt_number((interval[1] - interval[0]) / 2)}"
    return text


def markdown_table(columns: list[Column], rows: list[dict[str, Any]]) -> list[str]:
    """Header, rule and one line per row; a row whose status is not "ok" says so."""
    lines = [
        "| " + " | ".join(title for title, _, _ in columns) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(columns) - 1)) + "|",
    ]
    for row in rows:
        cells = [cell(row, key, fmt) for _, key, fmt in columns]
        name = next(i for i, (_, key, _) in enumerate(columns) if key in ("method", "unit"))
        if row.get("status") not in (None, "ok"):
            cells[name] += f" ({row['status']})"
        if row.get("target_met") is False:
            cells[name] += " (target missed)"
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def footer(rows: list[dict[str, Any]]) -> list[str]:
    """How the numbers were aggregated and tested, under tables that need saying so."""
    notes = []
    if any((row.get("n_seeds") or 0) > 1 for row in rows):
        notes.append(f"{INTERVAL_NOTE} (n seeds per row).")
    if any(row.get("avg_success_not_below_best") is not None for row in rows):
        notes.append(f"≈best: Avg Success not significantly below the best method's — {BOOTSTRAP_NOTE}.")
    if any(row.get("target_met") is False for row in rows):
        notes.append("target missed: the vanilla model did not reach vanilla.target_accuracy.")
    return [""] + notes if notes else []


def to_markdown(rows: list[dict[str, Any]]) -> str:
    return "\n".join(markdown_table(markdown_columns(rows), rows) + footer(rows)) + "\n"


def differences_markdown(differences: list[dict[str, Any]]) -> str:
    """Per method: the second run's Avg Success minus the first's, with its interval."""
    if not differences:
        return ""
    first, second = differences[0]["first"], differences[0]["second"]
    lines = [f"\nAvg Success, {second} minus {first}:", "", "| Method | Δ Avg Succ | 95% CI |", "|---|---:|---:|"]
    for row in differences:
        interval = row["avg_success_difference_ci95"]
        text = "–" if interval is None else f"[{fmt_number(interval[0])}, {fmt_number(interval[1])}]"
        lines.append(f"| {row['method']} | {fmt_number(row['avg_success_difference'])} | {text} |")
    lines += [
        "",
        "unpaired: each run's seed variance of its mean plus its val-pair bootstrap variance, "
        "Student-t with the smaller run's n-1 df.",
    ]
    return "\n".join(lines) + "\n"


def fmt_ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


EFFICIENCY_COLUMNS: list[Column] = [
    ("Method", "method", str),
    ("s/step", "sec_per_step", lambda v: fmt_number(v, 3)),
    ("p90 s/step", "sec_per_step_p90", lambda v: fmt_number(v, 3)),
    ("peak GB", "peak_mem_gb", lambda v: fmt_number(v, 3)),
    ("tokens/s", "tokens_per_sec", lambda v: fmt_number(v, 0)),
    ("MFU", "mfu", lambda v: "–" if v is None else f"{100 * v:.1f}%"),
    ("s/step vs GA", "sec_per_step_vs_ga", fmt_ratio),
    ("peak GB vs GA", "peak_mem_gb_vs_ga", fmt_ratio),
    ("tokens/s vs GA", "tokens_per_sec_vs_ga", fmt_ratio),
]


def efficiency_markdown(rows: list[dict[str, Any]]) -> str:
    """Table 5's layout; the memory kind (CUDA allocated, or CPU RSS growth) and device
    are named under the table."""
    lines = markdown_table(EFFICIENCY_COLUMNS, rows)
    kinds = sorted({f"{row['memory_kind']} on {row['device']}" for row in rows if row.get("memory_kind")})
    if kinds:
        lines.append(f"\nmemory: {', '.join(kinds)}; medians after warm-up steps")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    keys = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in keys})
    return buffer.getvalue()


def to_json(rows: list[dict[str, Any]]) -> str:
    """Standard JSON; non-finite values become the strings "inf" / "nan"."""
    return json.dumps(json_safe(rows), indent=2, allow_nan=False) + "\n"


RENDERERS: dict[str, Callable[[list[dict[str, Any]]], str]] = {"md": to_markdown, "csv": to_csv, "json": to_json}


def render(rows: list[dict[str, Any]], fmt: str, view: str = "scope") -> str:
    if view == "efficiency" and fmt == "md":
        return efficiency_markdown(rows)
    return RENDERERS[fmt](rows)
