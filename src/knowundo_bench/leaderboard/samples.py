"""Logged samples (``run --log-samples``): each val question's generation, teacher-forced
token accuracy and answer NLL, shown beside the vanilla model's to see why ROUGE-L and
success disagree."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError
from rich.table import Table
from rich.text import Text

from knowundo_bench.core.errors import InputError, one_line
from knowundo_bench.core.messages import format_validation_error
from knowundo_bench.core.untrusted import parse_json, read_regular_file
from knowundo_bench.records.files import load_record
from knowundo_bench.records.layout import SAMPLES_DIR
from knowundo_bench.records.schema import SampleLine, SampleReading


def read_samples(path: Path, warn: Callable[[str], None]) -> list[SampleLine]:
    """The lines of a samples file; a damaged line is skipped with a warning naming it."""
    try:
        text = read_regular_file(path).decode("utf-8")
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InputError(f"unreadable samples file ({one_line(str(error))})", source=str(path)) from None
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            lines.append(SampleLine.model_validate(parse_json(line)))
        except ValidationError as error:
            warn(f"{path}:{number}: {format_validation_error(error)}")
        except ValueError as error:
            warn(f"{path}:{number}: not JSON ({one_line(str(error)).split(':')[0]})")
    return lines


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
    started = record.vanilla if record and record.vanilla else None
    names = [started.unit] if started and started.unit else []  # records before 0.3 name only the seed
    names += [f"vanilla@{started.seed if started else None}", "vanilla"]
    vanilla = next((p for p in (folder / f"{name}.jsonl" for name in names) if p.is_file()), None)
    if vanilla is None:
        raise InputError("no vanilla samples beside the method's", source=str(folder))
    return unit, vanilla


def sample_table(
    results_dir: Path,
    method: str,
    *,
    scope: str | None = None,
    limit: int = 10,
    prefix: str | None = None,
    warn: Callable[[str], None] = lambda line: None,
) -> Table:
    """Question, reference, the vanilla model's and the method's generations, with each
    one's token accuracy and answer NLL; every text as written (never read as markup).
    ``warn`` hears of each damaged line skipped."""
    if scope not in (None, "unlearn", "retention"):
        raise InputError(f"--scope: {scope!r} is not 'unlearn' or 'retention'")
    unit_path, vanilla_path = sample_files(results_dir, method)
    unit, vanilla = read_samples(unit_path, warn), read_samples(vanilla_path, warn)
    by_question = {(row.scope, row.index): row for row in vanilla}
    rows = [row for row in unit if scope is None or row.scope == scope][:limit]

    def reading(row: SampleLine) -> SampleReading:
        if prefix is None:
            return row.plain
        if prefix not in row.prefixes:
            raise InputError(f"--prefix: no readings under {prefix!r} (have: {', '.join(row.prefixes) or 'none'})")
        return row.prefixes[prefix]

    title = f"{unit_path.stem} vs {vanilla_path.stem}" + (f" (prefix {prefix})" if prefix else "")
    table = Table(title=Text(title))
    for column in ("scope", "question", "reference", vanilla_path.stem, unit_path.stem):
        table.add_column(Text(column), overflow="fold")
    for row in rows:
        before = reading(by_question.get((row.scope, row.index), row))
        after = reading(row)
        table.add_row(Text(row.scope), Text(row.question), Text(row.reference), describe(before), describe(after))
    return table


def _reading(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def describe(reading: SampleReading) -> Text:
    generation = reading.generation
    text = "(not generated)" if generation is None else generation or "(empty)"
    accuracy, nll = _reading(reading.token_accuracy, ".0f"), _reading(reading.answer_nll, ".2f")
    return Text(text) + Text(f"\nacc {accuracy}% · nll {nll}", style="dim")
