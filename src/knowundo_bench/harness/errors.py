"""Errors that the CLI turns into one-line messages and exit code 2."""

from __future__ import annotations


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
