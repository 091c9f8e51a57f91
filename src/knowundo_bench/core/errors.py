"""Errors that the CLI turns into one-line messages and exit code 2."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) as one space."""
    return " ".join(text.split())


class WriteError(Exception):
    """A file or folder could not be written (disk full, no permission, a read-only
    filesystem): one line naming it and the system's reason. ``unwritable``: the target
    cannot be written at all (bad input, exit 2) rather than failing now (exit 1)."""

    UNWRITABLE = frozenset(
        {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP}
    )

    def __init__(self, path: str, reason: str, code: int | None = None) -> None:
        super().__init__(path, reason, code)  # picklable: a Ray worker's error reaches the driver
        self.path, self.reason, self.code = path, reason, code

    @classmethod
    def of(cls, path: object, error: OSError) -> WriteError:
        return cls(str(path), error.strerror or str(error), error.errno)

    @property
    def unwritable(self) -> bool:
        return self.code in self.UNWRITABLE

    def __str__(self) -> str:
        return one_line(f"cannot write {self.path} ({self.reason})")


class InputError(Exception):
    """Bad user input (spec, data file, CLI argument): reported as one line, exit code 2.

    The message is folded onto one line whatever it quotes (a YAML parser's two-line
    problem, a path with a newline), so that every report is exactly one line.
    """

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        message = one_line(message)
        super().__init__(f"{one_line(source)}: {message}" if source else message)


def describe(error: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message`` (a library's message can run to pages)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@contextmanager
def reported_as_input(what: str) -> Iterator[None]:
    """Turn any failure inside (a model that does not load, a tokenizer, a data file a
    library rejects) into one :class:`InputError` line, ``what: Type: message``; the
    original stays as ``__cause__`` for ``--debug``."""
    try:
        yield
    except InputError:
        raise
    except Exception as error:
        raise InputError(f"{what}: {describe(error)}") from error
