"""Turn result records into leaderboard rows: vanilla first, then methods in spec order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from knowundo_bench.harness.errors import InputError
from knowundo_bench.harness.results import number, read_record

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


def load_records(directory: Path) -> list[dict[str, Any]]:
    if not directory.is_dir():
        raise InputError("results directory not found", source=str(directory))
    records = [r for path in sorted(directory.glob("*.json")) if (r := read_record(path)) is not None]
    if not records:
        raise InputError("no knowundo-bench result records in this directory", source=str(directory))
    return sorted(records, key=lambda r: (r.get("order", 10**9), r.get("method", "")))


def record_row(record: dict[str, Any]) -> dict[str, Any]:
    metrics = record.get("metrics") or {}
    unlearn = metrics.get("unlearn") or {}
    retention = metrics.get("retention") or {}
    training = record.get("training") or {}
    return {
        "method": record.get("method"),
        "unlearn_success": number(unlearn.get("success")),
        "unlearn_ppl": number(unlearn.get("ppl")),
        "unlearn_rouge_l": number(unlearn.get("rouge_l")),
        "retention_success": number(retention.get("success")),
        "retention_ppl": number(retention.get("ppl")),
        "retention_rouge_l": number(retention.get("rouge_l")),
        "avg_success": number(metrics.get("avg_success")),
        "sec_per_step": number(training.get("sec_per_step")),
        "peak_mem_gb": number(training.get("peak_mem_gb")),
        "status": record.get("status", "ok"),
    }


def leaderboard_rows(directory: Path) -> list[dict[str, Any]]:
    return [record_row(record) for record in load_records(directory)]
