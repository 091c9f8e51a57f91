"""Result records: one JSON file per unit of work (vanilla, each method), written atomically.

Non-finite numbers (a diverged perplexity) are stored as the strings "inf", "-inf" and
"nan" so that every file is standard JSON; :func:`read_record` turns them back.
"""

from __future__ import annotations

import json
import math
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from knowundo_bench.harness.storage import atomic_write_text

RECORD_KIND = "knowundo-bench/result"
RECORD_SCHEMA = 1
_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def number(value: Any) -> float | None:
    """A metric value read back from JSON: float, non-finite strings restored, or None."""
    if value is None:
        return None
    if isinstance(value, str):
        return _NON_FINITE.get(value)
    return float(value)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("knowundo-bench", "torch", "transformers", "peft", "accelerate", "tokenizers", "rouge-score"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def write_record(output_dir: Path, label: str, record: dict[str, Any]) -> Path:
    path = output_dir / f"{label}.json"
    body = {"kind": RECORD_KIND, "schema": RECORD_SCHEMA, **record}
    atomic_write_text(path, json.dumps(json_safe(body), indent=2, allow_nan=False) + "\n")
    return path


def read_record(path: Path) -> dict[str, Any] | None:
    """The record in ``path``, or None if the file is not a knowundo-bench result."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("kind") != RECORD_KIND:
        return None
    return data
