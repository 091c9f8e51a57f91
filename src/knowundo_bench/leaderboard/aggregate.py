"""Turn result records into leaderboard rows: vanilla first, then methods in spec order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from knowundo_bench.harness.errors import InputError
from knowundo_bench.harness.records.index import indexed_records
from knowundo_bench.harness.records.schema import Metrics, ResultRecord, TrainingSummary

ROW_KEYS = (
    "method",
    "unlearn_success",
    "unlearn_ppl",
    "unlearn_rouge_l",
    "retention_success",
    "retention_ppl",
    "retention_rouge_l",
    "avg_success",
    "sec_per_step",
    "peak_mem_gb",
    "status",
)


# General tasks (lm-evaluation-harness), in the paper's column order; null where not run.
GENERAL_KEYS = ("mmlu", "arc_challenge", "truthfulqa_mc2", "social_iqa", "race", "general_avg")


def prefix_keys(name: str) -> tuple[str, str]:
    """Row keys of the scope successes under prompt prefix ``name`` (Finding 2)."""
    return f"unlearn_success@{name}", f"retention_success@{name}"


def load_records(directory: Path) -> list[ResultRecord]:
    if not directory.is_dir():
        raise InputError("results directory not found", source=str(directory))
    records = indexed_records(directory)
    if not records:
        raise InputError("no knowundo-bench result records in this directory", source=str(directory))
    return sorted(records, key=lambda r: (r.order, r.method))


def record_row(record: ResultRecord) -> dict[str, Any]:
    metrics = record.metrics or Metrics()
    training = record.training or TrainingSummary()
    row: dict[str, Any] = {
        "method": record.method,
        "unlearn_success": metrics.unlearn.success,
        "unlearn_ppl": metrics.unlearn.ppl,
        "unlearn_rouge_l": metrics.unlearn.rouge_l,
        "retention_success": metrics.retention.success,
        "retention_ppl": metrics.retention.ppl,
        "retention_rouge_l": metrics.retention.rouge_l,
        "avg_success": metrics.avg_success,
        "sec_per_step": training.sec_per_step,
        "peak_mem_gb": training.peak_mem_gb,
        "status": record.status,
    }
    general = metrics.general or {}
    row.update({key: general.get(key) for key in GENERAL_KEYS})
    for name, prefixed in metrics.prompt_prefixes.items():
        unlearn_key, retention_key = prefix_keys(name)
        row[unlearn_key] = prefixed.unlearn.success
        row[retention_key] = prefixed.retention.success
    return row


def leaderboard_rows(directory: Path) -> list[dict[str, Any]]:
    """One row per record; every row carries the keys any row has (null where absent)."""
    rows = [record_row(record) for record in load_records(directory)]
    keys = row_keys(rows)
    return [{key: row.get(key) for key in keys} for row in rows]


def row_keys(rows: list[dict[str, Any]]) -> list[str]:
    keys = list(ROW_KEYS) + list(GENERAL_KEYS)
    for row in rows:
        keys += [key for key in row if key not in keys]
    return keys


EFFICIENCY_KEYS = (
    "method",
    "sec_per_step",
    "sec_per_step_p90",
    "peak_mem_gb",
    "tokens_per_sec",
    "mfu",
    "sec_per_step_vs_ga",
    "peak_mem_gb_vs_ga",
    "tokens_per_sec_vs_ga",
    "memory_kind",
    "device",
)


def efficiency_rows(directory: Path) -> list[dict[str, Any]]:
    """Table 5's layout: per unlearning method, time, memory and throughput per step,
    each also as a ratio to GA's (null when the run has no GA)."""
    rows = []
    for record in load_records(directory):
        training = record.training
        if record.status != "ok" or training is None:
            continue
        rows.append(
            {
                "method": record.method,
                "method_name": record.method_name,
                **{key: getattr(training, key) for key in EFFICIENCY_KEYS[1:6]},
                "memory_kind": training.memory_kind,
                "device": training.device,
            }
        )
    reference = next((r for r in rows if r["method_name"] == "ga"), None)
    for row in rows:
        for key in ("sec_per_step", "peak_mem_gb", "tokens_per_sec"):
            base = reference[key] if reference else None
            value = row[key]
            row[f"{key}_vs_ga"] = value / base if value is not None and base else None
    return [{key: row.get(key) for key in EFFICIENCY_KEYS} for row in rows]
