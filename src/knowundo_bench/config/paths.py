"""Paths in a spec are read from the spec file's folder, not from the current directory.

``knowundo-bench run /abs/path/spec.yaml`` from anywhere finds ``data.path:
../data``: before a spec is validated, every relative value of a field typed ``Path``
(pydantic's ``DirectoryPath`` and ``FilePath`` included), in the common sections and in
each plugin's parameters, is joined to the spec's folder. A ``str`` field that holds
either a hub id or a local folder (``hf``'s ``name_or_path``) is marked
:class:`HubIdOrPath` and anchored when it reads as a path.
"""

from __future__ import annotations

import os
import re
import typing
from pathlib import Path, PurePath
from typing import Any

from pydantic import BaseModel

# A Hugging Face repo id: "name" or "namespace/name" (letters, digits, "-", "_", "."; no
# "--" or "..", which the hub forbids).
_HUB_ID = re.compile(r"^(?!.*(--|\.\.))[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)?$")


class HubIdOrPath:
    """Marks a ``str`` field (``Annotated[str, HubIdOrPath()]``) that names either a hub
    repo or a local folder; a relative folder is read from the spec's folder."""

    def __repr__(self) -> str:
        return "HubIdOrPath()"


def reads_as_path(value: str, base: Path | None = None) -> bool:
    """Whether ``value`` names a local folder rather than a hub repo id: it starts with
    "/", "." or "~", cannot be a repo id (e.g. two slashes), or exists beside ``base``."""
    if value.startswith(("/", ".", "~")) or not _HUB_ID.match(value):
        return True
    try:
        return base is not None and (base / value).exists()
    except (OSError, ValueError):  # a name no filesystem takes: not a folder
        return False


def _types_in(annotation: Any) -> list[Any]:
    """``annotation`` and what it wraps (``X | None``, ``Annotated[X, ...]``, ``list[X]``)."""
    found = [annotation]
    for arg in typing.get_args(annotation):
        found += _types_in(arg)
    return found


def _is_path_field(annotation: Any) -> bool:
    return any(isinstance(c, type) and issubclass(c, PurePath) for c in _types_in(annotation))


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    return next((c for c in _types_in(annotation) if isinstance(c, type) and issubclass(c, BaseModel)), None)


def _anchored(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return os.path.normpath(path if path.is_absolute() else base / path)


def _anchor_value(value: Any, base: Path) -> Any:
    """A path, or each path of a list or mapping of paths, joined to ``base``."""
    if isinstance(value, str) and value:
        return _anchored(value, base)
    if isinstance(value, list):
        return [_anchor_value(item, base) for item in value]
    if isinstance(value, dict):
        return {key: _anchor_value(item, base) for key, item in value.items()}
    return value


def anchor_paths(model: type[BaseModel], values: Any, base: Path) -> Any:
    """``values`` (raw input for ``model``) with each relative path joined to ``base``:
    fields typed ``Path``, :class:`HubIdOrPath` fields that read as a path, and the same
    inside nested models and lists of them. Anything else is returned unchanged."""
    if not isinstance(values, dict):
        return values
    anchored = dict(values)
    for name, field in model.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
        key = next((k for k in (alias, name) if k is not None and k in anchored), None)
        if key is None or anchored[key] is None:
            continue
        value = anchored[key]
        markers = [*field.metadata, *_types_in(field.annotation)]
        if any(isinstance(marker, HubIdOrPath) for marker in markers):
            if isinstance(value, str) and reads_as_path(value, base):
                anchored[key] = _anchored(value, base)
        elif _is_path_field(field.annotation):
            anchored[key] = _anchor_value(value, base)  # Path, list[Path], dict[str, Path]
        elif (nested := _nested_model(field.annotation)) is not None:
            if isinstance(value, dict):
                anchored[key] = anchor_paths(nested, value, base)
            elif isinstance(value, list):
                anchored[key] = [anchor_paths(nested, item, base) for item in value]
    return anchored
