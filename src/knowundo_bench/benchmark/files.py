"""Reading a domain from files: KnowUnDo's ``{unlearn,retention}_{train,val}.json``
(``{"text": question, "labels": answer}`` records), JSON Lines validated line by line, and
each pair's instance inferred where the files do not name it."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from knowundo_bench.benchmark.pairs import SCOPES, SPLITS, QAPair, Scope, Split
from knowundo_bench.core.errors import InputError
from knowundo_bench.core.messages import format_validation_error
from knowundo_bench.core.untrusted import read_regular_file


class RawRecord(BaseModel):
    """A record as KnowUnDo stores it: ``{"text": question, "labels": answer}``; domains
    written by ``knowundo-bench build`` also name the ``instance`` (and the ``category``,
    not read here)."""

    model_config = ConfigDict(extra="ignore")

    text: str = Field(min_length=1)
    labels: str = Field(min_length=1)
    instance: str | None = Field(None, min_length=1)


RAW_RECORDS = TypeAdapter(list[RawRecord])


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
# A word is at most 64 characters, taken whole (possessive), so that matching is linear in the
# text: unbounded, "A-A-A-..." made every start scan to its end (quadratic).
_WORD = r"[A-Z][\w'\-]{1,63}+(?![\w'\-])"
_NAME = re.compile(rf"\b({_WORD}(?:\s++(?:(?:{_CONNECTORS})\s++)*{_WORD}){{1,3}})")
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


def read_local_domain(directory: Path) -> list[QAPair]:
    """Read ``{unlearn,retention}_{train,val}.json`` from a KnowUnDo-style directory."""
    if not directory.is_dir():
        raise InputError("not a directory", source=str(directory))
    pairs: list[QAPair] = []
    for scope in SCOPES:
        for split in SPLITS:
            path = directory / f"{scope}_{split}.json"
            try:
                payload = read_regular_file(path)
            except OSError as error:
                raise InputError(f"cannot read file ({error.strerror})", source=str(path)) from None
            except ValueError as error:
                raise InputError(f"cannot read file ({error})", source=str(path)) from None
            pairs += records_to_pairs(parse_raw_records(payload, str(path)), scope, split)
    return pairs


Record = TypeVar("Record", bound=BaseModel)


def read_json_lines(path: Path, model: type[Record]) -> list[Record]:
    """Validate every line of a JSON Lines file; errors name the file, line and field."""
    try:
        text = read_regular_file(path).decode("utf-8")
    except OSError as error:
        raise InputError(f"cannot read file ({error.strerror})", source=str(path)) from None
    except UnicodeDecodeError as error:
        raise InputError(f"not UTF-8 text (byte {error.start})", source=str(path)) from None
    except ValueError as error:
        raise InputError(f"cannot read file ({error})", source=str(path)) from None
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(model.model_validate_json(line))
        except ValidationError as error:
            raise InputError(format_validation_error(error), source=f"{path}:{number}") from None
    return records
