"""Where things live in a results directory: one ``<unit>.json`` record per unit, the
logged samples beside them, and the records of units a spec no longer has set aside."""

from __future__ import annotations

from pathlib import Path

SAMPLES_DIR = "samples"  # samples/<unit>.jsonl (run --log-samples)
SUPERSEDED_DIR = "superseded"  # records of units the spec no longer has


def record_path(directory: Path, unit: str) -> Path:
    """The record file of ``unit`` (its label: "vanilla", "ga", "ga@1") in ``directory``."""
    return directory / f"{unit}.json"


def samples_path(directory: Path, unit: str) -> Path:
    """The samples file of ``unit`` in ``directory``."""
    return directory / SAMPLES_DIR / f"{unit}.jsonl"
