"""Results that travel (issue 29): the leaderboard as a Hugging Face dataset, or as a
per-seed CSV/JSON table.

A dataset folder holds two splits in the hub's own layout, ``data/per_seed-00000-of-00001.parquet``
(one row per unit) and ``data/aggregated-00000-of-00001.parquet`` (one row per method and
run, means over seeds with 95% intervals), and a dataset card: ``README.md`` whose YAML
front matter names the splits and carries each run's identity and resolved spec, and
whose text defines the metrics and their intervals. ``datasets.load_dataset("parquet",
data_dir=OUT)`` reads it back; the hub's CLI uploads it (docs/commands.md)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from knowundo_bench import __version__
from knowundo_bench.core.errors import InputError
from knowundo_bench.leaderboard.aggregate import leaderboard_rows, load_records
from knowundo_bench.leaderboard.export import to_csv, to_json, to_markdown
from knowundo_bench.records.atomic import atomic_directory, atomic_write_bytes, atomic_write_text

SPLITS = ("per_seed", "aggregated")

METRIC_DEFINITIONS = {
    "unlearn_success": "Unlearn Success (%): 100 - teacher-forced token accuracy on the Unlearn Scope's val "
    "answers (section 2.3); higher is better",
    "retention_success": "Retention Success (%): teacher-forced token accuracy on the Retention Scope's val "
    "answers; higher is better",
    "avg_success": "Avg Success (%): the mean of Unlearn and Retention Success",
    "unlearn_ppl": "perplexity of the Unlearn Scope's val answers (higher: more forgotten); geometric mean over seeds",
    "retention_ppl": "perplexity of the Retention Scope's val answers (lower: better kept)",
    "unlearn_rouge_l": "ROUGE-L F1 (%) of greedy answers against the Unlearn Scope's references (lower is better)",
    "retention_rouge_l": "ROUGE-L F1 (%) of greedy answers against the Retention Scope's references",
    "sec_per_step": "median seconds per optimizer step after warm-up (Table 5)",
    "peak_mem_gb": "peak memory per step in GB: the CUDA allocator's peak, or CPU peak-RSS growth (memory_kind)",
    "privleak": "membership-inference privacy leak against the retrain oracle's AUC (open-unlearning's privleak)",
}

INTERVALS = (
    "Aggregated rows give the mean over seeds and, in `<metric>_ci95`, the 95% Student-t interval over "
    "seeds (n-1 degrees of freedom); perplexities are geometric means. `n` is the number of seeds. "
    "`avg_success_not_below_best` marks the rows whose Avg Success is not significantly below the best "
    "method's (a paired test over seeds and val pairs)."
)


def export_table(directories: Sequence[Path], output: Path, fmt: str) -> int:
    """The per-seed table as one CSV or JSON file at ``output`` (written atomically);
    returns its row count."""
    rows = leaderboard_rows(list(directories), per_seed=True)
    text = to_csv(rows) if fmt == "csv" else to_json(rows)
    if output.is_dir():
        raise InputError(f"--output: {output} is a folder; give a file name for --format {fmt}")
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output, text)
    return len(rows)


def export_dataset(directories: Sequence[Path], output: Path) -> dict[str, int]:
    """Write the dataset folder ``output`` (which must not exist, or be empty): both
    splits as Parquet and the dataset card. Returns the row count of each split."""
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise InputError(f"--output: {output} exists and is not an empty folder; name a new one (nothing replaced)")
    folders = list(directories)
    tables = {
        "per_seed": leaderboard_rows(folders, per_seed=True),
        "aggregated": leaderboard_rows(folders),
    }
    if not tables["per_seed"]:
        raise InputError(f"no finished records in {', '.join(map(str, folders))}: nothing to export")
    if output.exists():
        output.rmdir()  # empty: atomic_directory renames its staging folder into place
    with atomic_directory(output) as staging:
        (staging / "data").mkdir()
        for split, table in arrow_tables(tables).items():
            buffer = pa.BufferOutputStream()
            pq.write_table(table, buffer)
            atomic_write_bytes(staging / "data" / f"{split}-00000-of-00001.parquet", buffer.getvalue().to_pybytes())
        atomic_write_text(staging / "README.md", dataset_card(folders, tables))
    return {split: len(rows) for split, rows in tables.items()}


def column_type(values: list[Any]) -> pa.DataType:
    """One Arrow type for a column: numbers are float64 unless every value is an integer
    (seeds, counts), non-finite floats stay (Parquet holds them), lists of numbers are
    lists (intervals, seeds), and anything mixed (a perplexity written as "inf") is text."""
    present = [v for v in values if v is not None]
    numbers = [x for v in present if isinstance(v, list) for x in v if x is not None]
    if not present:
        return pa.null()
    if all(isinstance(v, bool) for v in present):
        return pa.bool_()
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.int64()
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pa.float64()
    if all(isinstance(v, list) for v in present) and all(isinstance(x, int | float) for x in numbers):
        return pa.list_(pa.int64() if all(isinstance(x, int) for x in numbers) else pa.float64())
    return pa.string()


def arrow_tables(tables: dict[str, list[dict[str, Any]]]) -> dict[str, pa.Table]:
    """Each split as an Arrow table, all with one schema: the columns of every split, typed
    over every row (``load_dataset("parquet", ...)`` reads all splits with one schema)."""
    keys = list(dict.fromkeys(key for rows in tables.values() for row in rows for key in row))
    every = [row for rows in tables.values() for row in rows]
    types = {key: column_type([row.get(key) for row in every]) for key in keys}

    def cast(value: Any, kind: pa.DataType) -> Any:
        if value is None:
            return None
        if pa.types.is_string(kind):
            return value if isinstance(value, str) else json.dumps(value)
        if pa.types.is_floating(kind):
            return float(value)
        if pa.types.is_list(kind) and pa.types.is_floating(kind.value_type):
            return [None if x is None else float(x) for x in value]
        return value

    schema = pa.schema([(key, types[key]) for key in keys])
    return {
        split: pa.Table.from_pylist([{k: cast(row.get(k), types[k]) for k in keys} for row in rows], schema=schema)
        for split, rows in tables.items()
    }


def run_identities(directories: Sequence[Path]) -> list[dict[str, Any]]:
    """Per results folder: its run's identity (spec, data, model, seeds, versions) and the
    resolved spec, from the first record that has them."""
    runs = []
    for directory in directories:
        records = load_records(directory)
        identity = next((r.identity for r in records if r.identity is not None), None)
        spec = next((r.spec for r in records if r.spec is not None), None)
        entry: dict[str, Any] = {"folder": directory.name}
        if identity is not None:
            entry["identity"] = identity.model_dump(mode="json", exclude={"seed"})
        entry["seeds"] = sorted({r.seed for r in records if r.seed is not None})
        if spec is not None:
            entry["spec"] = spec
        runs.append(entry)
    return runs


def dataset_card(directories: Sequence[Path], tables: dict[str, list[dict[str, Any]]]) -> str:
    """README.md: front matter the hub reads (the splits' files, tags) with the runs'
    identities and specs, then what the columns mean and the aggregated table."""
    front = {
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"data/{split}-*.parquet"} for split in SPLITS],
            }
        ],
        "tags": ["knowundo-bench", "machine-unlearning", "leaderboard"],
        "knowundo_bench": {"version": __version__, "runs": run_identities(directories)},
    }
    metrics = [f"- `{key}`: {text}" for key, text in METRIC_DEFINITIONS.items() if key in tables["per_seed"][0]]
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        "# knowundo-bench results",
        "",
        f"Exported by knowundo-bench {__version__} from {len(directories)} results folder(s). Splits: `per_seed` "
        f"({len(tables['per_seed'])} rows, one per unit) and `aggregated` ({len(tables['aggregated'])} rows, one "
        "per method and run). Each run's identity and resolved spec are in this card's front matter.",
        "",
        "## Columns",
        "",
        *metrics,
        "- `<metric>@<prefix>`: the same metric under a prompt prefix; `<metric>@<attack>`: after an attack",
        "",
        "## Intervals",
        "",
        INTERVALS,
        "",
        "## Leaderboard",
        "",
        to_markdown(tables["aggregated"]).rstrip(),
        "",
    ]
    return "\n".join(lines) + "\n"
