"""Errors that the CLI turns into one-line messages and exit code 2."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) as one space."""
    return " ".join(text.split())


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
