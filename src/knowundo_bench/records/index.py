"""An SQLite index (WAL mode) of the result records of every results directory, kept
in the cache folder. The JSON records stay the truth: the index is synced from them
on each read (new or changed files by modification time, deleted ones dropped), and a
deleted or unreadable index is simply rebuilt."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from knowundo_bench.core.cache import cache_home
from knowundo_bench.records.files import json_safe, load_record, parse_record
from knowundo_bench.records.schema import ResultRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    directory TEXT NOT NULL,
    label TEXT NOT NULL,
    mtime_ns INTEGER NOT NULL,
    run TEXT, status TEXT, unit_key TEXT, finished_at TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (directory, label)
)
"""


def default_index_path() -> Path:
    return cache_home() / "results.sqlite"


class ResultsStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_index_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(self.path, timeout=30)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute(SCHEMA)

    def close(self) -> None:
        self.connection.close()

    def sync(self, directory: Path) -> list[ResultRecord]:
        """Index ``directory``'s records and return them (typed), in file-name order."""
        key = str(directory.resolve())
        known = {
            label: mtime
            for label, mtime in self.connection.execute(
                "SELECT label, mtime_ns FROM records WHERE directory = ?", (key,)
            )
        }
        present: dict[str, int] = {}
        with self.connection:
            for path in sorted(directory.glob("*.json")):
                label, mtime = path.stem, path.stat().st_mtime_ns
                if known.get(label) == mtime:
                    present[label] = mtime
                    continue
                record = load_record(path)
                if record is None:
                    continue
                present[label] = mtime
                self.connection.execute(
                    "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        key,
                        label,
                        mtime,
                        record.run,
                        record.status,
                        record.unit_key,
                        record.finished_at,
                        json.dumps(json_safe(record.model_dump(mode="python")), allow_nan=False),
                    ),
                )
            for label in set(known) - set(present):
                self.connection.execute("DELETE FROM records WHERE directory = ? AND label = ?", (key, label))
        rows = self.connection.execute("SELECT body FROM records WHERE directory = ? ORDER BY label", (key,))
        return [typed for (body,) in rows if (typed := parse_record(json.loads(body))) is not None]

    def directories(self) -> list[str]:
        return [d for (d,) in self.connection.execute("SELECT DISTINCT directory FROM records ORDER BY directory")]


def indexed_records(directory: Path) -> list[ResultRecord]:
    """The records of ``directory`` through the index; straight from the files if the
    index cannot be used (read-only cache, a lock held elsewhere)."""
    try:
        store = ResultsStore()
        try:
            return store.sync(directory)
        finally:
            store.close()
    except sqlite3.Error:
        return [r for path in sorted(directory.glob("*.json")) if (r := load_record(path)) is not None]
