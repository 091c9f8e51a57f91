"""Result record files: one JSON file per unit of work (vanilla, each method), written
atomically.

Non-finite numbers (a diverged perplexity) are stored as the strings "inf", "-inf" and
"nan" so that every file is standard JSON; the typed :class:`ResultRecord` turns them back.
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from knowundo_bench.core.errors import one_line
from knowundo_bench.core.messages import format_validation_error
from knowundo_bench.core.untrusted import parse_json, read_regular_file
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


@dataclass(frozen=True)
class RecordFile:
    """What a ``.json`` file in a results directory holds: a knowundo-bench result (``data``),
    or a ``problem`` that makes it unreadable (not a regular file, too large, not UTF-8, not
    JSON, nested too deeply), or neither (another tool's JSON file, left alone)."""

    data: dict[str, Any] | None = None
    problem: str | None = None


def inspect_record(path: Path) -> RecordFile:
    try:
        text = read_regular_file(path).decode("utf-8")
    except OSError as error:
        return RecordFile(problem=f"cannot read it ({error.strerror or error})")
    except UnicodeDecodeError as error:
        return RecordFile(problem=f"not UTF-8 text (byte {error.start})")
    except ValueError as error:
        return RecordFile(problem=str(error))
    try:
        data = parse_json(text)
    except ValueError as error:
        return RecordFile(problem=f"not JSON ({one_line(str(error)).split(':')[0]})")
    if not isinstance(data, dict) or data.get("kind") != RECORD_KIND:
        return RecordFile()
    return RecordFile(data=data)


def read_record(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path`` as stored, or None if the file is not a readable
    knowundo-bench result."""
    return inspect_record(path).data


def parse_record(data: dict[str, Any]) -> ResultRecord | None:
    try:
        return ResultRecord.model_validate(data)
    except (ValidationError, RecursionError):
        return None


def schema_problems(directory: Path) -> list[str]:
    """One line per ``.json`` file in ``directory`` that the leaderboard, the plots and a
    resumed run skip: a result the typed record rejects (the first invalid field), or a
    file that cannot be read as one (why)."""
    problems = []
    for path in sorted(directory.glob("*.json")):
        found = inspect_record(path)
        if found.problem is not None:
            problems.append(f"{path.name}: {found.problem}")
            continue
        if found.data is None:
            continue
        try:
            ResultRecord.model_validate(found.data)
        except ValidationError as error:
            problems.append(f"{path.name}: {format_validation_error(error)}")
        except RecursionError:
            problems.append(f"{path.name}: nested too deeply")
    return problems


def load_record(path: Path) -> ResultRecord | None:
    """The typed record in ``path``, or None if the file is not a readable knowundo-bench
    result (another JSON file, a record damaged by hand)."""
    data = read_record(path)
    return None if data is None else parse_record(data)
