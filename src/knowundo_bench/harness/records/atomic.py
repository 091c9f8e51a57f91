"""Crash-safe writes: a file or a whole folder appears complete or not at all."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from knowundo_bench.harness.faults import fault_point


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same folder, fsync, then rename: never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        fault_point("write")
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yield a staging folder beside ``path``; on success it is renamed to ``path``.

    If ``path`` appeared meanwhile (another process finished first), its copy is kept.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        yield staging
        if path.exists():
            shutil.rmtree(staging)
        else:
            os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# What a killed writer leaves behind: atomic_write_text's temp file (".NAME.XXXXXXXX") and
# atomic_directory's staging folder (".NAME-XXXXXXXX"), XXXXXXXX from tempfile.
_LEFTOVER = re.compile(r"^\..+[.-][a-z0-9_]{8}$")


def remove_stale_temporaries(directory: Path, finished: str = "*") -> list[Path]:
    """Delete the temp files and staging folders a killed process left in ``directory``
    beside finished entries matching ``finished`` (e.g. "*.json"); nothing else is
    touched. Returns what was removed."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for leftover in directory.glob(".*"):
        stem = leftover.name[1:-9]
        if not _LEFTOVER.match(leftover.name) or not fnmatch.fnmatch(stem, finished):
            continue
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        removed.append(leftover)
    return removed
