"""Errors that the CLI turns into one-line messages and exit code 2."""

from __future__ import annotations


class InputError(Exception):
    """Bad user input (spec, data file, CLI argument): reported as one line, exit code 2."""

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)
