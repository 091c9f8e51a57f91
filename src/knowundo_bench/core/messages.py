"""Validation errors in the words of the file a user wrote: one line naming the field,
never pydantic's Python type names or union branch names."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails


def first_error(error: ValidationError) -> ErrorDetails:
    """The error to report: a misspelt field (an unknown field close to a missing one)
    before the "missing" error it causes, else the first."""
    errors = error.errors()
    missing = [str(e["loc"][-1]) for e in errors if e["type"] == "missing"]
    for e in errors:
        if e["type"] == "extra_forbidden" and difflib.get_close_matches(str(e["loc"][-1]), missing, n=1):
            return e
    return errors[0]


def yaml_kind(value: Any) -> str:
    """What a parsed YAML/JSON value is, in the file's words (not Python's type names)."""
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return f"true/false ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"text ({value[:40]!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _in_file_words(details: ErrorDetails) -> str:
    """pydantic's message, reworded where it speaks of Python types ("a valid dictionary or
    instance of MethodSpec") or of paths it could not find."""
    kind = details["type"]
    given = details.get("input")
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return f"expected a mapping of fields (key: value), got {yaml_kind(given)}"
    if kind in {"list_type", "tuple_type"}:
        return f"expected a list (- item lines, or [a, b]), got {yaml_kind(given)}"
    if kind == "path_type":
        return f"expected a path (text), got {yaml_kind(given)}"
    if kind == "path_not_directory":
        exists = isinstance(given, str | Path) and Path(given).exists()
        return f"{given} is not a folder" if exists else f"folder {given} does not exist"
    if kind == "path_not_file":
        exists = isinstance(given, str | Path) and Path(given).exists()
        return f"{given} is not a file" if exists else f"file {given} does not exist"
    return details["msg"].removeprefix("Value error, ")


# The parts of an error location that name a branch of a union (``str``, ``float``,
# ``dict[str,any]``, ``literal['auto']``, ``function-after[...]``), not a field.
_BRANCH = re.compile(
    r"^(str|int|float|bool|none|bytes|(dict|list|tuple|set|literal|is-instance|lax-or-strict|json-or-python|"
    r"nullable|union|tagged-union|chain|function-\w+|constrained-\w+)\[.*\])$"
)
_BRANCH_WORDS = {"str": "text", "int": "a whole number", "float": "a number", "bool": "true/false", "none": "nothing"}


def _field_location(loc: tuple) -> tuple:
    return tuple(part for part in loc if not (isinstance(part, str) and _BRANCH.match(part)))


def _branch_words(details: ErrorDetails, depth: int) -> str:
    """What one branch of a union takes, in the file's words."""
    tag = str(details["loc"][depth]) if len(details["loc"]) > depth else ""
    if tag in _BRANCH_WORDS:
        return _BRANCH_WORDS[tag]
    if tag.startswith("literal["):
        return str((details.get("ctx") or {}).get("expected", tag.removeprefix("literal[").removesuffix("]")))
    if tag.startswith(("dict[", "is-instance[")) or details["type"] in {"dict_type", "model_type"}:
        return "a mapping"
    if tag.startswith(("list[", "tuple[", "set[")):
        return "a list"
    return details["msg"].removeprefix("Input should be ").removeprefix("Value error, ")


def format_validation_error(error: ValidationError, prefix: str = "") -> str:
    """The error to report (see :func:`first_error`) as ``field.path: message``. A value
    that matches no branch of a union (``localizer: 3``) says what the field takes
    ("expected text or a mapping"), without pydantic's branch names in the path."""
    first = first_error(error)
    where = _field_location(first["loc"])
    location = ".".join(str(part) for part in (*([prefix] if prefix else []), *where))
    branches = [e for e in error.errors() if _field_location(e["loc"]) == where and len(e["loc"]) > len(where)]
    if len(branches) > 1:
        depth = len(where)
        words = list(dict.fromkeys(_branch_words(e, depth) for e in branches))
        message = f"expected {' or '.join(words)}, got {yaml_kind(first.get('input'))}"
    else:
        message = _in_file_words(first)
    return f"{location}: {message}" if location else message
