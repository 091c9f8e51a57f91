"""An SQLite index (WAL mode) of the result records of every results directory, kept
in the cache folder. The JSON records stay the truth: the index is synced from them
on each read (new or changed files by modification time, deleted ones dropped), and a
deleted or unreadable index is simply rebuilt."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from knowundo_bench.harness.results import read_record

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
    root = Path(os.environ.get("KNOWUNDO_BENCH_CACHE", Path.home() / ".cache" / "knowundo-bench"))
    return root / "results.sqlite"


class ResultsStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_index_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(self.path, timeout=30)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute(SCHEMA)

    def close(self) -> None:
        self.connection.close()

    def sync(self, directory: Path) -> list[dict[str, Any]]:
        """Index ``directory``'s records and return them (parsed), in file-name order."""
        key = str(directory.resolve())
        known = {label: mtime for label, mtime in self.connection.execute(
            "SELECT label, mtime_ns FROM records WHERE directory = ?", (key,))}
        present: dict[str, int] = {}
        with self.connection:
            for path in sorted(directory.glob("*.json")):
                label, mtime = path.stem, path.stat().st_mtime_ns
                if known.get(label) == mtime:
                    present[label] = mtime
                    continue
                record = read_record(path)
                if record is None:
                    continue
                present[label] = mtime
                self.connection.execute(
                    "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (key, label, mtime, record.get("run"), record.get("status"), record.get("unit_key"),
                     record.get("finished_at"), json.dumps(record)))
            for label in set(known) - set(present):
                self.connection.execute("DELETE FROM records WHERE directory = ? AND label = ?", (key, label))
        rows = self.connection.execute("SELECT body FROM records WHERE directory = ? ORDER BY label", (key,))
        return [json.loads(body) for (body,) in rows]

    def directories(self) -> list[str]:
        return [d for (d,) in self.connection.execute("SELECT DISTINCT directory FROM records ORDER BY directory")]


def indexed_records(directory: Path) -> list[dict[str, Any]]:
    """The records of ``directory`` through the index; straight from the files if the
    index cannot be used (read-only cache, a lock held elsewhere)."""
    try:
        store = ResultsStore()
        try:
            return store.sync(directory)
        finally:
            store.close()
    except sqlite3.Error:
        return [r for path in sorted(directory.glob("*.json")) if (r := read_record(path)) is not None]
