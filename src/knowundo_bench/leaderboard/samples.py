"""Logged samples (``run --log-samples``): each val question's generation, teacher-forced
token accuracy and answer NLL, shown beside the vanilla model's to see why ROUGE-L and
success disagree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from knowundo_bench.core.errors import InputError
from knowundo_bench.records.files import load_record
from knowundo_bench.records.layout import SAMPLES_DIR
from knowundo_bench.records.schema import number


def read_samples(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"unreadable samples file ({error})", source=str(path)) from None


def sample_files(results_dir: Path, method: str) -> tuple[Path, Path]:
    """The samples of ``method`` (a unit label, or a method label: its first seed) and of
    the vanilla model it started from."""
    folder = results_dir / SAMPLES_DIR
    if not folder.is_dir():
        raise InputError("no samples here (run with --log-samples or eval.log_samples: true)", source=str(folder))
    candidates = [folder / f"{method}.jsonl"] + sorted(folder.glob(f"{method}@*.jsonl"))
    unit = next((path for path in candidates if path.is_file()), None)
    if unit is None:
        known = sorted(path.stem for path in folder.glob("*.jsonl"))
        raise InputError(f"no samples of {method!r} (have: {', '.join(known) or 'none'})", source=str(folder))
    record = load_record(results_dir / f"{unit.stem}.json")
    vanilla_seed = record.vanilla.seed if record and record.vanilla else None
    vanilla = next(
        (p for p in (folder / f"vanilla@{vanilla_seed}.jsonl", folder / "vanilla.jsonl") if p.is_file()), None
    )
    if vanilla is None:
        raise InputError("no vanilla samples beside the method's", source=str(folder))
    return unit, vanilla


def sample_table(
    results_dir: Path, method: str, *, scope: str | None = None, limit: int = 10, prefix: str | None = None
) -> Table:
    """Question, reference, the vanilla model's and the method's generations, with each
    one's token accuracy and answer NLL."""
    if scope not in (None, "unlearn", "retention"):
        raise InputError(f"--scope: {scope!r} is not 'unlearn' or 'retention'")
    unit_path, vanilla_path = sample_files(results_dir, method)
    unit, vanilla = read_samples(unit_path), read_samples(vanilla_path)
    by_question = {(row["scope"], row["index"]): row for row in vanilla}
    rows = [row for row in unit if scope is None or row["scope"] == scope][:limit]

    def reading(row: dict[str, Any]) -> dict[str, Any]:
        if prefix is None:
            return row["plain"]
        if prefix not in row["prefixes"]:
            raise InputError(f"--prefix: no readings under {prefix!r} (have: {', '.join(row['prefixes']) or 'none'})")
        return row["prefixes"][prefix]

    table = Table(title=f"{unit_path.stem} vs {vanilla_path.stem}" + (f" (prefix {prefix})" if prefix else ""))
    for column in ("scope", "question", "reference", vanilla_path.stem, unit_path.stem):
        table.add_column(column, overflow="fold")
    for row in rows:
        before = reading(by_question.get((row["scope"], row["index"]), row))
        after = reading(row)
        table.add_row(row["scope"], row["question"], row["reference"], describe(before), describe(after))
    return table


def describe(reading: dict[str, Any]) -> str:
    generation = reading.get("generation")
    text = "(not generated)" if generation is None else generation or "(empty)"
    accuracy, nll = number(reading.get("token_accuracy")), number(reading.get("answer_nll"))
    return f"{escape(text)}\n[dim]acc {accuracy:.0f}% · nll {nll:.2f}[/dim]"
