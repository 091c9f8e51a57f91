"""One command per output folder: a run (and a Ray driver), a build and ``plot -o`` hold an
exclusive lock on their output folder (``flock`` on ``<folder>/.lock``) for as long as they
run. A second command on the same folder stops at once with one line naming the holder,
before any work; the lock goes with its process, however it ends."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from knowundo_bench.core.errors import InputError
from knowundo_bench.records.atomic import process_umask

LOCK_FILE = ".lock"


def holder(descriptor: int) -> str:
    """Who holds the lock, from what it wrote in the lock file (another process's words:
    read with a cap, shown only when well formed)."""
    try:
        data = json.loads(os.pread(descriptor, 4096, 0).decode("utf-8"))
        pid, command, started = int(data["pid"]), str(data["command"]), float(data["started"])
        when = datetime.fromtimestamp(started).isoformat(sep=" ", timespec="seconds")
        return f"`knowundo-bench {command[:20]}`, pid {pid}, started {when}"
    except (OSError, ValueError, KeyError, TypeError, OverflowError):
        return "another process"


@contextlib.contextmanager
def locked(directory: Path, command: str) -> Iterator[float]:
    """Hold ``directory``'s lock (creating the folder if needed) and yield when it was
    taken; the folders this call created are removed again when the block fails and they
    hold nothing but the lock."""
    created = [folder for folder in (directory, *directory.absolute().parents) if not folder.exists()]
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / LOCK_FILE
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        descriptor = os.open(path, flags, 0o666 & ~process_umask())  # never through a planted link
    except OSError as error:
        raise InputError(f"output directory not writable ({error.strerror or error})", source=str(directory)) from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"in use by {holder(descriptor)}; wait for it to end, or use another folder", source=str(directory)
            ) from None
        since = time.time()
        note = json.dumps({"pid": os.getpid(), "command": command, "started": since}).encode()
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, note + b"\n", 0)
        try:
            yield since
        except BaseException:
            if created and [entry.name for entry in directory.iterdir()] == [LOCK_FILE]:
                path.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    for folder in created:  # deepest first; a folder someone filled meanwhile stays
                        folder.rmdir()
            raise
    finally:
        os.close(descriptor)  # releases the lock


def taken_at(directory: Path) -> float | None:
    """When this folder's lock was last taken (its file's modification time), if ever."""
    try:
        return (directory / LOCK_FILE).stat().st_mtime
    except OSError:
        return None
