"""Crash-safe writes: a file or a whole folder appears complete or not at all."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from knowundo_bench.core.errors import WriteError
from knowundo_bench.core.faults import fault_point


def process_umask() -> int:
    """The process umask: from /proc (Linux 4.7+), which changes nothing; elsewhere by
    setting it and setting it back (there is no getter), as rarely as possible."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder, fsync, then rename: never half a file.

    ``mkstemp`` creates the temp file 0600; it is given the mode an ordinary ``open``
    would (0666 less the umask) before the rename, so that colleagues on a shared
    filesystem can read records as they can read any other file of the user's."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as error:
        raise WriteError.of(path, error) from error
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            with suppress(OSError):  # some network filesystems refuse chmod: keep their default
                os.fchmod(handle.fileno(), 0o666 & ~process_umask())
            os.fsync(handle.fileno())
        fault_point("write")
        os.replace(temp, path)
    except OSError as error:
        Path(temp).unlink(missing_ok=True)
        raise WriteError.of(path, error) from error
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sync_directory(directory: Path) -> None:
    """fsync a folder (its entries: a rename in it); where folders cannot be opened, nothing."""
    with suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def sync_tree(root: Path) -> None:
    """fsync every file below ``root``, then every folder, deepest first."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            path = Path(folder) / name
            if path.is_symlink():
                continue
            descriptor = os.open(path, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        sync_directory(Path(folder))


@contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yield a staging folder beside ``path``; on success it is renamed to ``path``
    (with the mode a plain ``mkdir`` would give it).

    If ``path`` appeared meanwhile (another process finished first), its copy is kept.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    except OSError as error:
        raise WriteError.of(path, error) from error
    try:
        with suppress(OSError):
            staging.chmod(0o777 & ~process_umask())  # mkdtemp makes it 0700; a plain mkdir would not
        yield staging
        if path.exists():
            shutil.rmtree(staging)
        else:
            try:
                sync_tree(staging)  # every file on disk before the rename makes the folder visible
                os.replace(staging, path)
            except OSError as error:
                raise WriteError.of(path, error) from error
            sync_directory(path.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# What a killed writer leaves behind: atomic_write_text's temp file (".NAME.XXXXXXXX") and
# atomic_directory's staging folder (".NAME-XXXXXXXX"), XXXXXXXX from tempfile.
_LEFTOVER = re.compile(r"^\..+[.-][a-z0-9_]{8}$")


def remove_stale_temporaries(directory: Path, finished: str = "*", older_than: float | None = None) -> list[Path]:
    """Delete the temp files and staging folders a killed process left in ``directory``
    beside finished entries matching ``finished`` (e.g. "*.json"), only those last
    modified before ``older_than`` (when this command took the folder's lock: what came
    after is a live writer's); nothing else is touched. Returns what was removed."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for leftover in directory.glob(".*"):
        stem = leftover.name[1:-9]
        if not _LEFTOVER.match(leftover.name) or not fnmatch.fnmatch(stem, finished):
            continue
        if older_than is not None and leftover.lstat().st_mtime >= older_than:
            continue
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        removed.append(leftover)
    return removed
