"""``--set KEY=VALUE``: a spec field overridden by its dotted path, the value read as
YAML as a reader means it."""

from __future__ import annotations

import copy
import math
import re
import typing
from typing import Any

import yaml

from knowundo_bench.core.errors import InputError
from knowundo_bench.core.messages import yaml_kind
from knowundo_bench.core.untrusted import load_yaml

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def override_value(text: str) -> Any:
    """``--set``'s VALUE read as YAML (``3``, ``true``, ``[0, 1]``, ``{name: ga}``), with
    ``1e-4`` a number, as a reader expects (YAML 1.1 would read it as text)."""
    try:
        value = load_yaml(text) if text.strip() else ""
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and _NUMBER.match(text.strip()):  # unquoted only: "1e3" in quotes stays text
        number = float(value)
        return number if math.isfinite(number) else value  # 8e65721 is a commit, not infinity
    return value


def apply_overrides(raw: dict[str, Any], overrides: typing.Sequence[str]) -> dict[str, Any]:
    """``raw`` with each ``KEY=VALUE`` set: KEY a dotted path (``methods.0.lr``,
    ``eval.max_new_tokens``, ``seed``), list entries by index; a missing mapping along
    the path is created, a missing list entry is an error. Setting another
    ``execution.executor`` than the spec's drops the spec's settings for its own."""
    raw = copy.deepcopy(raw)
    for override in overrides:
        key, sep, text = override.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise InputError(f"--set {override!r}: expected KEY=VALUE with a dotted KEY (methods.0.lr=1e-4)")
        parts = key.split(".")
        node: Any = raw
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    indices = f"indices 0-{len(node) - 1}" if node else "no entries"
                    raise InputError(f"--set {key}: {'.'.join(parts[:depth])} is a list with {indices}, not {part!r}")
                index = int(part)
                if last:
                    node[index] = override_value(text)
                else:
                    if isinstance(node[index], str) and parts[depth - 1 : depth] == ["methods"]:
                        node[index] = {"name": node[index]}  # `- ga` written bare
                    node = node[index]
            elif isinstance(node, dict):
                if last and parts == ["execution", "executor"] and override_value(text) != node.get(part, "local"):
                    # another executor: the section's other settings were the spec's executor's
                    node.clear()
                    node[part] = override_value(text)
                elif last:
                    node[part] = override_value(text)
                else:
                    if node.get(part) is None:  # absent, or an empty section (`eval:`)
                        node[part] = {}
                    node = node[part]
            else:
                raise InputError(f"--set {key}: {'.'.join(parts[:depth])} is {yaml_kind(node)}, not a mapping or list")
    return raw
