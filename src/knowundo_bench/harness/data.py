"""The benchmark's data model: question-answer pairs split by scope and split.

Every data source plugin returns a flat list of :class:`QAPair`; :class:`Benchmark`
groups them into the four sets the protocol uses (forget = unlearn/train,
retain = retention/train, metrics on the val splits, vanilla training on all four).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from knowundo_bench.harness.errors import InputError

Scope = Literal["unlearn", "retention"]
Split = Literal["train", "val"]
SCOPES: tuple[Scope, ...] = ("unlearn", "retention")
SPLITS: tuple[Split, ...] = ("train", "val")


class QAPair(BaseModel):
    """One question-answer pair of a benchmark domain."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    scope: Scope
    split: Split
    instance: str | None = None


class RetainText(BaseModel):
    """A passage of out-of-distribution retain data: trained on as plain language
    modelling (every token labelled), never scored."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(min_length=1)


def check_out_of_distribution(texts: Iterable[RetainText], pairs: Iterable[QAPair], source: str) -> None:
    """Refuse out-of-distribution retain data that holds benchmark text: any benchmark
    question (12+ characters) or answer (24+ characters: short ones such as "Yes" recur
    in any text) found verbatim in a passage."""
    needles = {q for p in pairs if len(q := p.question.strip()) >= 12}
    needles |= {a for p in pairs if len(a := p.answer.strip()) >= 24}
    for index, item in enumerate(texts):
        for needle in needles:
            if needle in item.text:
                raise InputError(
                    f"passage {index} contains benchmark text ({needle[:40]!r}...); out-of-distribution "
                    "retain data must not hold the benchmark's own questions or answers",
                    source=source,
                )


class RawRecord(BaseModel):
    """A record as KnowUnDo stores it: ``{"text": question, "labels": answer}``; domains
    written by ``knowundo-bench build`` also name the ``instance`` (and the ``category``,
    not read here)."""

    model_config = ConfigDict(extra="ignore")

    text: str = Field(min_length=1)
    labels: str = Field(min_length=1)
    instance: str | None = Field(None, min_length=1)


RAW_RECORDS = TypeAdapter(list[RawRecord])


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


def parse_raw_records(payload: bytes | str, source: str) -> list[RawRecord]:
    """Validate a JSON list of ``{text, labels}`` records; errors name the file and field."""
    if isinstance(payload, bytes):
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputError(f"not UTF-8 text (byte {error.start})", source=source) from None
    try:
        records = RAW_RECORDS.validate_json(payload)
    except ValidationError as error:
        raise InputError(format_validation_error(error), source=source) from None
    if not records:
        raise InputError("empty split: the file holds no records", source=source)
    return records


def records_to_pairs(records: Iterable[RawRecord], scope: Scope, split: Split) -> list[QAPair]:
    return [QAPair(question=r.text, answer=r.labels, scope=scope, split=split, instance=r.instance) for r in records]


# A person's name or a book's title: two to four capitalised words, allowing O'Connor, Jean-Luc, "de la", "of the".
_CONNECTORS = "de|da|van|von|der|del|la|le|du|bin|al|of|the"
_NAME = re.compile(rf"\b([A-Z][\w'\-]+(?:\s+(?:(?:{_CONNECTORS})\s+)*[A-Z][\w'\-]+){{1,3}})")
_NOT_NAME_START = {
    "Who",
    "What",
    "Where",
    "When",
    "Which",
    "How",
    "Why",
    "Can",
    "Could",
    "Does",
    "Did",
    "Is",
    "Are",
    "Has",
    "Have",
    "In",
    "The",
    "A",
    "An",
    "Do",
    "Tell",
    "Please",
    "Name",
    "Give",
    "If",
    "Was",
    "Were",
    "On",
    "At",
    "For",
    "Of",
    "To",
    "Describe",
}


def _name_candidates(text: str) -> list[str]:
    names = []
    for match in _NAME.finditer(text):
        words = match.group(1).split()
        while words and words[0] in _NOT_NAME_START:
            words = words[1:]
        if len(words) >= 2:
            names.append(re.sub(r"'s$", "", " ".join(words)))
    return names


def infer_instances(pairs: list[QAPair]) -> list[QAPair]:
    """Fill ``instance`` from the author's full name in each question, where missing.

    KnowUnDo's privacy questions always name the author in full (appendix B.2), so the
    recurring name (three or more questions) that recurs most across the domain wins,
    looking at the question and its answer together (so "221B Baker St" loses to the
    author its answer names); pairs naming no recurring name inherit the previous
    pair's instance (records are grouped by author).
    """
    counts = Counter(name for pair in pairs for name in set(_name_candidates(pair.question)))
    known = {name for name, count in counts.items() if count >= 3}
    result: list[QAPair] = []
    previous: str | None = None
    for pair in pairs:
        if pair.instance is None:
            text = f"{pair.question} {pair.answer}"
            names = [n for n in _name_candidates(text) if n in known]
            instance = max(names, key=lambda n: counts[n]) if names else previous
            pair = pair.model_copy(update={"instance": instance})
        previous = pair.instance
        result.append(pair)
    return result


def first_instances(pairs: list[QAPair], count: int) -> list[QAPair]:
    """Keep the pairs of the first ``count`` instances, in order of first appearance."""
    order: list[str] = []
    for pair in pairs:
        if pair.instance is not None and pair.instance not in order:
            order.append(pair.instance)
    keep = set(order[:count])
    return [pair for pair in pairs if pair.instance in keep]


@dataclass(frozen=True)
class Benchmark:
    """A domain's QA pairs grouped by scope and split."""

    pairs: tuple[QAPair, ...]

    def select(self, scope: Scope, split: Split) -> list[QAPair]:
        return [p for p in self.pairs if p.scope == scope and p.split == split]

    @property
    def forget(self) -> list[QAPair]:
        return self.select("unlearn", "train")

    @property
    def retain(self) -> list[QAPair]:
        return self.select("retention", "train")

    @property
    def unlearn_val(self) -> list[QAPair]:
        return self.select("unlearn", "val")

    @property
    def retention_val(self) -> list[QAPair]:
        return self.select("retention", "val")

    @property
    def instances(self) -> list[str]:
        seen: dict[str, None] = {}
        for pair in self.pairs:
            if pair.instance is not None:
                seen.setdefault(pair.instance)
        return list(seen)

    def fingerprint(self) -> str:
        """A content hash: part of the vanilla cache key."""
        payload = json.dumps([p.model_dump() for p in self.pairs], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def check_complete(self, source: str) -> None:
        for scope in SCOPES:
            for split in SPLITS:
                if not self.select(scope, split):
                    raise InputError(f"empty split: no {scope}/{split} pairs", source=source)


def read_local_domain(directory: Path) -> list[QAPair]:
    """Read ``{unlearn,retention}_{train,val}.json`` from a KnowUnDo-style directory."""
    if not directory.is_dir():
        raise InputError("not a directory", source=str(directory))
    pairs: list[QAPair] = []
    for scope in SCOPES:
        for split in SPLITS:
            path = directory / f"{scope}_{split}.json"
            try:
                payload = path.read_bytes()
            except OSError as error:
                raise InputError(f"cannot read file ({error.strerror})", source=str(path)) from None
            pairs += records_to_pairs(parse_raw_records(payload, str(path)), scope, split)
    return pairs


Record = TypeVar("Record", bound=BaseModel)


def read_json_lines(path: Path, model: type[Record]) -> list[Record]:
    """Validate every line of a JSON Lines file; errors name the file, line and field."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise InputError(f"cannot read file ({error.strerror})", source=str(path)) from None
    except UnicodeDecodeError as error:
        raise InputError(f"not UTF-8 text (byte {error.start})", source=str(path)) from None
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(model.model_validate_json(line))
        except ValidationError as error:
            raise InputError(format_validation_error(error), source=f"{path}:{number}") from None
    return records
