"""Table 5's view: per unlearning method, time, memory and throughput per step, each
also as a ratio to GA's, with the localizer's time and the unlearning's total."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from knowundo_bench.leaderboard.aggregate import load_records
from knowundo_bench.records.memory import CPU_MEMORY, CPU_RSS_NOISE_FLOOR_GB, memory_kind
from knowundo_bench.records.schema import ResultRecord

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
    "memory_noise_floor_gb",
    "peak_mem_gb_vs_ga_omitted",
    "padding_fraction",
    "localize_seconds",
    "total_seconds",
)
# Why ``peak_mem_gb_vs_ga`` is null although both numbers exist.
BELOW_NOISE_FLOOR = "below_cpu_rss_noise_floor"
DIFFERENT_MEMORY_KIND = "different_memory_kind"


def memory_ratio(row: dict[str, Any], reference: dict[str, Any] | None) -> tuple[float | None, str | None]:
    """``row``'s peak memory over GA's, or None and why not: CPU RSS growth below
    :data:`CPU_RSS_NOISE_FLOOR_GB` in either (noise, not the method), or one measured
    as CPU RSS growth and the other as the CUDA allocator's peak."""
    if reference is None or row["peak_mem_gb"] is None or not reference["peak_mem_gb"]:
        return None, None
    value, base = row["peak_mem_gb"], reference["peak_mem_gb"]
    if row["memory_kind"] != reference["memory_kind"]:
        return None, DIFFERENT_MEMORY_KIND
    if row["memory_kind"] == CPU_MEMORY and min(value, base) < CPU_RSS_NOISE_FLOOR_GB:
        return None, BELOW_NOISE_FLOOR
    return value / base, None


def unlearning_seconds(record: ResultRecord) -> dict[str, float | None]:
    """The localizer's wall time and the unlearning's total (localisation plus every
    optimizer step): MemFlex pays for its localisation once, beyond its steps, which a
    per-step ratio (Table 5) leaves out."""
    assert record.training is not None
    localize = record.localizer.seconds if record.localizer is not None else None
    steps = sum(record.training.step_seconds) if record.training.step_seconds else None
    total = None
    if steps is not None and (record.localizer is None or localize is not None):  # None: a record before issue 28
        total = steps + (localize or 0.0)
    return {"localize_seconds": localize, "total_seconds": total}


def efficiency_rows(directory: Path) -> list[dict[str, Any]]:
    """Table 5's layout: per unlearning method, time, memory and throughput per step,
    each also as a ratio to GA's (null when the run has no GA; the memory ratio also when
    :func:`memory_ratio` says it means nothing, with the reason in
    ``peak_mem_gb_vs_ga_omitted``). CPU rows carry the noise floor they were held to."""
    rows = []
    for record in load_records(directory):
        training = record.training
        if record.status != "ok" or training is None:
            continue
        rows.append(
            {
                "method": record.unit or record.method,
                "method_name": record.method_name,
                **{key: getattr(training, key) for key in EFFICIENCY_KEYS[1:6]},
                "memory_kind": memory_kind(training.memory_kind, training.device),
                "device": training.device,
                "padding_fraction": training.padding_fraction,
                **unlearning_seconds(record),
            }
        )
    reference = next((r for r in rows if r["method_name"] == "ga"), None)
    for row in rows:
        for key in ("sec_per_step", "tokens_per_sec"):
            base = reference[key] if reference else None
            value = row[key]
            row[f"{key}_vs_ga"] = value / base if value is not None and base else None
        row["peak_mem_gb_vs_ga"], row["peak_mem_gb_vs_ga_omitted"] = memory_ratio(row, reference)
        row["memory_noise_floor_gb"] = CPU_RSS_NOISE_FLOOR_GB if row["memory_kind"] == CPU_MEMORY else None
    return [{key: row.get(key) for key in EFFICIENCY_KEYS} for row in rows]
