"""Leaderboard renderers. Markdown follows the paper's table layout (Tables 2-4):
Unlearn (Succ↑ PPL↑ ROUGE-L↓) | Retention (Succ↑ PPL↓ ROUGE-L↑) | Avg Succ↑, plus
time and peak memory per training step (Table 5). Memory is labelled by what was
measured: "peak GB" is the CUDA allocator's peak, "peak RSS growth GB (CPU)" the growth
of peak RSS within a step on CPU; a table with both tags each memory cell with its device."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from typing import Any

from knowundo_bench.leaderboard.aggregate import RECOVERY, attacked_keys, robustness_rows, row_keys
from knowundo_bench.leaderboard.efficiency import BELOW_NOISE_FLOOR, DIFFERENT_MEMORY_KIND
from knowundo_bench.leaderboard.stats import BOOTSTRAP_NOTE, INTERVAL_NOTE
from knowundo_bench.records.files import json_safe
from knowundo_bench.records.memory import CPU_MEMORY, CPU_RSS_NOISE_FLOOR_GB, CUDA_MEMORY

Column = tuple[str, str, Callable[[Any], str]]  # title, row key, formatter


def fmt_number(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    if math.isnan(value):
        return "nan"
    return f"{value:.{digits}f}"


def fmt_ppl(value: float | None) -> str:
    """Perplexity in one format: plain below 10^4, else scientific ("7.9e+07",
    "3.2e+25"); "inf" only where it overflowed a float."""
    if value is None:
        return "–"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf"
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


MEMORY_DEVICES = {CPU_MEMORY: "CPU", CUDA_MEMORY: "CUDA"}
MEMORY_KEYS = ("peak_mem_gb", "peak_mem_gb_vs_ga")


def memory_kinds(rows: list[dict[str, Any]]) -> set[str | None]:
    """What the rows' memory numbers measure (``memory_kind``; None: not recorded)."""
    return {row.get("memory_kind") for row in rows if row.get("peak_mem_gb") is not None}


def memory_titles(rows: list[dict[str, Any]]) -> tuple[str, str]:
    """Titles of the memory column and of its ratio to GA: "peak GB" for the CUDA
    allocator's peak (or when the records do not say), RSS growth for CPU rows, both
    where the table mixes them (then each cell names its device, :func:`tag_memory`)."""
    kinds = memory_kinds(rows)
    if kinds == {CPU_MEMORY}:
        return "peak RSS growth GB (CPU)", "RSS growth vs GA (CPU)"
    if CPU_MEMORY in kinds:
        return "peak GB (CUDA) / RSS growth GB (CPU)", "peak GB / RSS growth vs GA"
    return "peak GB", "peak GB vs GA"


def tag_memory(columns: list[Column], rows: list[dict[str, Any]]) -> tuple[list[Column], list[dict[str, Any]]]:
    """In a table mixing CPU and CUDA memory, the memory cells with their device
    ("0.021 (CPU)", "12.500 (CUDA)"), as display-only keys of row copies."""
    kinds = memory_kinds(rows)
    if CPU_MEMORY not in kinds or len(kinds) < 2:
        return columns, rows
    tagged_columns: list[Column] = []
    shown = [dict(row) for row in rows]
    for title, key, fmt in columns:
        if key not in MEMORY_KEYS:
            tagged_columns.append((title, key, fmt))
            continue
        for row, copy in zip(rows, shown, strict=True):
            text, device = fmt(row.get(key)), MEMORY_DEVICES.get(row.get("memory_kind") or "")
            copy[f"{key} shown"] = f"{text} ({device})" if row.get(key) is not None and device else text
        tagged_columns.append((title, f"{key} shown", str))
    return tagged_columns, shown


GENERAL_COLUMNS: list[Column] = [
    ("MMLU", "mmlu", fmt_number),
    ("ARC", "arc_challenge", fmt_number),
    ("TruthfulQA", "truthfulqa_mc2", fmt_number),
    ("SIQA", "social_iqa", fmt_number),
    ("RACE", "race", fmt_number),
    ("General Avg", "general_avg", fmt_number),
]


MIA_COLUMNS: list[Column] = [
    ("MIA AUC (Min-K%)", "mia_auc_mink", lambda v: fmt_number(v, 3)),
    ("PrivLeak %", "privleak", fmt_number),
]


ORACLE_COLUMN: Column = ("gap to oracle↓", "oracle_gap", fmt_number)


def memory_is_noise(rows: list[dict[str, Any]]) -> bool:
    """Whether every row's memory is CPU peak-RSS growth under the noise floor (the
    allocator keeping pages, not the method): the scope view leaves it out, the
    efficiency view keeps it."""
    measured = [row for row in rows if row.get("peak_mem_gb") is not None]
    return bool(measured) and all(
        row.get("memory_kind") == CPU_MEMORY and row["peak_mem_gb"] < CPU_RSS_NOISE_FLOOR_GB for row in measured
    )


def markdown_columns(rows: list[dict[str, Any]]) -> list[Column]:
    """The paper's columns, then per prompt prefix the successes under it (Finding 2),
    then the general tasks (Tables 2-4's right half) when any row has them."""
    columns = list(MARKDOWN_COLUMNS)
    columns[-1] = (memory_titles(rows)[0], "peak_mem_gb", fmt_number)
    if memory_is_noise(rows):
        columns.pop()
    if any(row.get("oracle_gap") is not None for row in rows):
        columns.insert(columns.index(("Avg Succ↑", "avg_success", fmt_number)) + 1, ORACLE_COLUMN)
    if rows and all(row.get("unit") for row in rows):  # --per-seed: a row per unit
        columns[0] = ("Unit", "unit", str)
    if len({row.get("run") for row in rows}) > 1:
        columns.insert(0, ("Run", "run", str))
    for key in row_keys(rows):
        scope, _, prefix = key.partition("@")
        if prefix and scope in ("unlearn_success", "retention_success") and not key.endswith("_ci95"):
            columns.append(
                (f"{'Unlearn' if scope.startswith('unlearn') else 'Retention'} Succ@{prefix}", key, fmt_number)
            )
    if any(row.get("mia_auc_mink") is not None for row in rows):
        columns += MIA_COLUMNS
    if any(row.get("general_avg") is not None for row in rows):
        columns += GENERAL_COLUMNS
    if any((row.get("n_seeds") or 0) > 1 for row in rows):
        columns.append(("n", "n_seeds", lambda v: "–" if v is None else str(v)))
    if any(row.get("avg_success_not_below_best") is not None for row in rows):
        columns.append(("≈best", "avg_success_not_below_best", lambda v: "" if v is None else ("✓" if v else "")))
    return columns


def cell(row: dict[str, Any], key: str, fmt: Callable[[Any], str]) -> str:
    """A value with its 95% interval where the row has one: ``mean ± half-width``; the
    ends ``mean [low, high]`` where the interval was held within its bounds (0-100) and so
    is no longer symmetric; a perplexity's geometric mean ``×/÷ factor``."""
    text = fmt(row.get(key))
    interval = row.get(f"{key}_ci95")
    if not interval or not all(v is not None and math.isfinite(v) for v in interval) or row.get(key) is None:
        return text
    low, high = interval
    if fmt is fmt_ppl:
        return text + (f" ×/÷ {math.sqrt(high / low):.2f}" if low > 0 else "")
    if key in (row.get("ci95_unclipped") or {}):
        return f"{text} [{fmt_number(low)}, {fmt_number(high)}]"
    return text + f" ± {fmt_number((high - low) / 2)}"


def collapse_mark(row: dict[str, Any]) -> str:
    """ " (collapsed)", or " (collapsed 2/3)" for some of a row's seeds; "" otherwise."""
    if not row.get("collapsed"):
        return ""
    seeds, total = row.get("collapsed_seeds"), row.get("n_seeds")
    return f" (collapsed {seeds}/{total})" if seeds is not None and total and seeds < total else " (collapsed)"


def table_cells(columns: list[Column], rows: list[dict[str, Any]]) -> list[list[str]]:
    """Each row's cells as text; a row whose status is not "ok", or whose model
    collapsed, says so by its name."""
    lines = []
    for row in rows:
        cells = [cell(row, key, fmt) for _, key, fmt in columns]
        name = next(i for i, (_, key, _) in enumerate(columns) if key in ("method", "unit"))
        if row.get("status") not in (None, "ok"):
            cells[name] += f" ({row['status']})"
        if row.get("target_met") is False:
            cells[name] += " (target missed)"
        cells[name] += collapse_mark(row)
        lines.append(cells)
    return lines


def markdown_table(columns: list[Column], rows: list[dict[str, Any]]) -> list[str]:
    """Header, rule and one line per row (:func:`table_cells`)."""
    lines = [
        "| " + " | ".join(title for title, _, _ in columns) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(columns) - 1)) + "|",
    ]
    return lines + ["| " + " | ".join(cells) + " |" for cells in table_cells(columns, rows)]


def footer(rows: list[dict[str, Any]]) -> list[str]:
    """How the numbers were aggregated and tested, under tables that need saying so."""
    notes = []
    if any((row.get("n_seeds") or 0) > 1 for row in rows):
        notes.append(f"{INTERVAL_NOTE} (n seeds per row).")
    if any(row.get("avg_success_not_below_best") is not None for row in rows):
        notes.append(f"≈best: Avg Success not significantly below the best method's — {BOOTSTRAP_NOTE}.")
    if any(row.get("unlearn_refusal_rate") is not None for row in rows):
        notes.append(
            "guarded rows (a guard in front of the model; the method's label names it): a refused request counts "
            "as forgotten, its ROUGE-L is the refusal's, and perplexity is over the answered requests only (nan: "
            "none answered); refusal rates are in the JSON/CSV export and the guard's accuracy in its records."
        )
    if any(row.get("target_met") is False for row in rows):
        notes.append("target missed: the vanilla model did not reach vanilla.target_accuracy.")
    notes += reading_notes(rows)
    return [""] + notes if notes else []


def reading_notes(rows: list[dict[str, Any]]) -> list[str]:
    """What a reader needs to read the numbers right: what Avg Success can hide, intervals
    held within 0-100, collapsed models, the oracle gap, memory left out as noise."""
    notes = []
    if any(row.get("avg_success") is not None for row in rows):
        notes.append(
            "Avg Succ: the mean of Unlearn and Retention Success (section 4.1); forgetting nothing (vanilla: 0 and "
            "100) and forgetting everything both average about 50, so read it beside both scopes"
            + (" and the gap to the retrain oracle." if any(row.get("oracle_gap") is not None for row in rows) else ".")
        )
    if any(row.get("ci95_unclipped") for row in rows):
        notes.append(
            "mean [low, high]: a 95% interval held within 0-100 where the Student-t interval ran past it (its raw "
            "ends are in ci95_unclipped of the JSON and CSV)."
        )
    if any(row.get("collapsed") for row in rows):
        notes.append(
            "collapsed: the model's greedy answers are degenerate (empty, a token or word repeated) or one answer "
            "for 90% of the questions or more: its Unlearn Success measures a broken model, not forgetting "
            "(collapsed, collapsed_seeds and degenerate_share in the JSON and CSV)."
        )
    if any(row.get("oracle_gap") is not None for row in rows):
        notes.append(
            "gap to oracle: the mean absolute difference from the retrain oracle's Unlearn and Retention Success, "
            "in points (0: as a model never trained on the forget set)."
        )
    if memory_is_noise(rows):
        notes.append(
            f"peak memory left out: CPU peak-RSS growth under the {CPU_RSS_NOISE_FLOOR_GB:g} GB noise floor in "
            "every row (--view efficiency shows it)."
        )
    return notes


def to_markdown(rows: list[dict[str, Any]]) -> str:
    columns, shown = tag_memory(markdown_columns(rows), rows)
    return "\n".join(markdown_table(columns, shown) + footer(rows)) + "\n"


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


def robustness_markdown(rows: list[dict[str, Any]]) -> str:
    """Per method: plain Unlearn Success, and per prompt prefix and attack the Unlearn
    Success after it and the recovery (how much it took back), the Retention Success
    after it; then membership inference (Min-K% AUC and privleak)."""
    shown = robustness_rows(rows)
    names = [key.removeprefix(RECOVERY) for key in (shown[0] if shown else {}) if key.startswith(RECOVERY)]
    names = [name for name in names if not name.endswith("_ci95")]
    columns: list[Column] = [("Method", "method", str), ("Unlearn Succ↑", "unlearn_success", fmt_number)]
    if len({row.get("run") for row in rows}) > 1:
        columns.insert(0, ("Run", "run", str))
    for name in names:
        keys = attacked_keys(name)
        columns += [
            (f"Unlearn Succ@{name}↑", keys["unlearn"], fmt_number),
            (f"Recovery@{name}↓", keys["recovery"], fmt_number),
            (f"Retention Succ@{name}↑", keys["retention"], fmt_number),
        ]
    columns.append(("Retention Succ↑", "retention_success", fmt_number))
    if any(row.get("mia_auc_mink") is not None for row in shown):
        columns += MIA_COLUMNS
    lines = markdown_table(columns, shown)
    lines += [
        "",
        "Recovery@X: plain Unlearn Success minus Unlearn Success after X (a prompt prefix or an attack), in "
        "points: how much of the forgetting X undid (negative: X made the model forget more).",
    ]
    if any(row.get("mia_auc_mink") is not None for row in shown):
        lines.append(
            "MIA AUC: Min-K% (k 0.4 by default) of the forget set against the holdout (1: members told apart, "
            "0.5: indistinguishable); PrivLeak: MUSE's, ((1 − AUC) − (1 − oracle's)) / (1 − oracle's) × 100 "
            "(0: as the retrain oracle; negative: membership leaks; positive: over-unlearned)."
        )
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
    ("padding", "padding_fraction", lambda v: "–" if v is None else f"{100 * v:.1f}%"),
    ("localize s", "localize_seconds", lambda v: fmt_number(v, 1)),
    ("total s", "total_seconds", lambda v: fmt_number(v, 1)),
]


# Shown only where some row has them (records written before issue 28 have none).
OPTIONAL_EFFICIENCY_KEYS = ("padding_fraction", "localize_seconds", "total_seconds")


def efficiency_columns(rows: list[dict[str, Any]]) -> list[Column]:
    """:data:`EFFICIENCY_COLUMNS` with the memory titles of :func:`memory_titles`, less
    the optional columns no row has a value for."""
    memory, ratio = memory_titles(rows)
    titles = {"peak_mem_gb": memory, "peak_mem_gb_vs_ga": ratio}
    empty = {key for key in OPTIONAL_EFFICIENCY_KEYS if all(row.get(key) is None for row in rows)}
    if "localize_seconds" in empty:  # a total beside per-step times says something only beside a localizer's
        empty.add("total_seconds")
    return [(titles.get(key, title), key, fmt) for title, key, fmt in EFFICIENCY_COLUMNS if key not in empty]


def efficiency_markdown(rows: list[dict[str, Any]]) -> str:
    """Table 5's layout; the memory kind (CUDA allocated, or CPU RSS growth) and device
    are named under the table, and why a memory ratio shows "–" where both numbers exist
    (CPU RSS growth under the noise floor, or memory measured differently from GA's)."""
    columns, shown = tag_memory(efficiency_columns(rows), rows)
    lines = markdown_table(columns, shown)
    kinds = sorted({f"{row['memory_kind']} on {row['device']}" for row in rows if row.get("memory_kind")})
    if kinds:
        lines.append(f"\nmemory: {', '.join(kinds)}; medians after warm-up steps")
    omitted = {row.get("peak_mem_gb_vs_ga_omitted") for row in rows}
    ratio = memory_titles(rows)[1]
    if BELOW_NOISE_FLOOR in omitted:
        lines.append(
            f"\n{ratio}: – where this row's or GA's CPU RSS growth is below the {CPU_RSS_NOISE_FLOOR_GB:g} GB "
            "noise floor (growth that small is what the allocator kept resident, not the method's memory)."
        )
    if DIFFERENT_MEMORY_KIND in omitted:
        lines.append(f"\n{ratio}: – where this row and GA's were measured differently (CPU RSS growth, CUDA peak).")
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
    if view == "robustness":
        return robustness_markdown(rows) if fmt == "md" else RENDERERS[fmt](robustness_rows(rows))
    return RENDERERS[fmt](rows)
