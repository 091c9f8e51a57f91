"""Result record files: one JSON file per unit of work (vanilla, each method), written
atomically.

Non-finite numbers (a diverged perplexity) are stored as the strings "inf", "-inf" and
"nan" so that every file is standard JSON; the typed :class:`ResultRecord` turns them back.
"""

from __future__ import annotations

import json
import math
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from knowundo_bench.core.messages import format_validation_error
from knowundo_bench.records.atomic import atomic_write_text
from knowundo_bench.records.layout import record_path
from knowundo_bench.records.schema import RECORD_KIND, ResultRecord


def json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("knowundo-bench", "torch", "transformers", "peft", "accelerate", "tokenizers", "rouge-score"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def record_json(record: ResultRecord) -> str:
    return json.dumps(json_safe(record.model_dump(mode="python")), indent=2, allow_nan=False) + "\n"


def write_record(output_dir: Path, label: str, record: ResultRecord | dict[str, Any]) -> Path:
    """Write ``record`` (validated first when given as a dict) to ``output_dir/label.json``."""
    typed = record if isinstance(record, ResultRecord) else ResultRecord.model_validate(record)
    path = record_path(output_dir, label)
    atomic_write_text(path, record_json(typed))
    return path


def read_record(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path`` as stored, or None if the file is not a knowundo-bench
    result."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("kind") != RECORD_KIND:
        return None
    return data


def parse_record(data: dict[str, Any]) -> ResultRecord | None:
    try:
        return ResultRecord.model_validate(data)
    except ValidationError:
        return None


def schema_problems(directory: Path) -> list[str]:
    """One line per result file in ``directory`` that the typed record rejects (the
    leaderboard and the plots skip it): the file name and the first invalid field."""
    problems = []
    for path in sorted(directory.glob("*.json")):
        data = read_record(path)
        if data is None:
            continue
        try:
            ResultRecord.model_validate(data)
        except ValidationError as error:
            problems.append(f"{path.name}: {format_validation_error(error)}")
    return problems


def load_record(path: Path) -> ResultRecord | None:
    """The typed record in ``path``, or None if the file is not a readable knowundo-bench
    result (another JSON file, a record damaged by hand)."""
    data = read_record(path)
    return None if data is None else parse_record(data)
