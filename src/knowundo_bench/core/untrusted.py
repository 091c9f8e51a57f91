"""Reading what someone else may have written (a shared spec, a results folder, an
instances file): regular files only, up to a size cap; JSON without crashing on huge
numbers or deep nesting; YAML without aliases (no "billion laughs"), with bounded depth
and size. Every failure is a ``ValueError`` or ``OSError`` with a one-line reason."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import yaml

MAX_FILE_BYTES = 64 * 2**20  # a record, spec or data file larger than this is not one
MAX_YAML_DEPTH = 64  # a spec nests a handful of levels
MAX_YAML_NODES = 200_000  # a spec has hundreds of values; an inline domain a few thousand


def read_regular_file(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file (after links) of at most ``limit``
    bytes; a FIFO, a device (``/dev/zero``) or a directory is refused without reading or
    waiting on it."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    descriptor = os.open(path, flags)  # non-blocking: opening a FIFO must not wait for a writer
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > limit:
            raise ValueError(f"larger than {limit // 2**20} MiB")
        with os.fdopen(descriptor, "rb", closefd=True) as handle:
            descriptor = -1
            data = handle.read(limit + 1)
    finally:
        if descriptor >= 0:
            os.close(descriptor)
    if len(data) > limit:  # it grew while being read
        raise ValueError(f"larger than {limit // 2**20} MiB")
    return data


def parse_json(text: str | bytes) -> Any:
    """``json.loads``, with nesting too deep for Python reported as a ``ValueError``
    (as a number of over 4,300 digits and malformed JSON already are)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


class SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases (``*name``: the "billion laughs" and
    self-referencing documents), at most :data:`MAX_YAML_DEPTH` levels deep and
    :data:`MAX_YAML_NODES` values."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _refused(f"aliases (*{event.anchor}) are not allowed here: write the value out", event)
        self._nodes += 1
        if self._nodes > MAX_YAML_NODES:
            raise _refused(f"more than {MAX_YAML_NODES} values", event)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _refused(f"nested more than {MAX_YAML_DEPTH} levels deep", event)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _refused(problem: str, event: Any) -> yaml.composer.ComposerError:
    return yaml.composer.ComposerError(None, None, problem, event.start_mark)


def load_yaml(text: str) -> Any:
    """``text`` parsed with :class:`SpecLoader` (``yaml.YAMLError`` when it is not allowed)."""
    return yaml.load(text, Loader=SpecLoader)  # a SafeLoader: plain data only
