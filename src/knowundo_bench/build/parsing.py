"""Strict parsers of generator output: what they cannot read is dropped with a reason.

Each parser returns what it read and a :class:`~collections.Counter` of dropped items
by reason; the datacard reports the counts. Nothing a generator writes can crash a
build.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from knowundo_bench.build.generation import Category

_NUMBERING = re.compile(r"^\s*(?:\d{1,3}[.)]|[-*•])\s*")
_FIELD = re.compile(r"^(q|a|type)\s*:\s*(.*)$", re.IGNORECASE)
_TRUE = re.compile(r"^[\s\"'“”*`]*True\b")
_LOOSE = re.compile(r"[\W_]+")


def loose(text: str) -> str:
    """Case, punctuation and spacing folded (any script: NFKC, casefold): how a `type:`
    line, a near-duplicate question or an attribute value is compared."""
    return " ".join(_LOOSE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).split())


def _spaced(char: str) -> bool:
    """A letter or digit of a script that separates words with spaces (not Chinese,
    Japanese, Korean or Thai, whose words run together)."""
    return char.isalnum() and not any(low <= char <= high for low, high in _UNSPACED)


_UNSPACED = (("\u0e00", "\u0e7f"), ("\u2e80", "\u9fff"), ("\uac00", "\ud7af"), ("\uf900", "\ufaff"))


def contains(folded_text: str, folded_phrase: str) -> bool:
    """:func:`mentions` on texts already folded with :func:`loose`."""
    if not folded_phrase:
        return False
    start = folded_text.find(folded_phrase)
    while start >= 0:
        end = start + len(folded_phrase)
        before = start == 0 or not (_spaced(folded_text[start - 1]) and _spaced(folded_phrase[0]))
        after = end == len(folded_text) or not (_spaced(folded_text[end]) and _spaced(folded_phrase[-1]))
        if before and after:
            return True
        start = folded_text.find(folded_phrase, start + 1)
    return False


def mentions(text: str, phrase: str) -> bool:
    """Whether ``text`` holds ``phrase`` as whole words, once both are folded ("Li" is not
    in "literature"; in scripts without spaces, "李娜" is in "李娜的邮箱"); a phrase with
    no letters or digits is in nothing."""
    return contains(loose(text), loose(phrase))


@dataclass(frozen=True)
class ParsedPair:
    category: Category
    question: str
    answer: str


def _category_lookup(categories: Sequence[Category]) -> dict[str, Category]:
    """`type:` values a category answers to: its name, or one of its attributes."""
    lookup: dict[str, Category] = {}
    for category in categories:
        for alias in (category.name, *category.attributes):
            if loose(alias):
                lookup.setdefault(loose(alias), category)
    return lookup


def parse_qa(text: str, categories: Sequence[Category]) -> tuple[list[ParsedPair], Counter[str]]:
    """Read appendix B.2's output: blocks of ``Q:``, ``A:`` and ``type:`` lines, in that
    order (an answer may run on over several lines; a leading "1." or "-" is allowed).
    A block missing a line, or whose type names no category, is dropped."""
    lookup = _category_lookup(categories)
    pairs: list[ParsedPair] = []
    dropped: Counter[str] = Counter()
    block: dict[str, str] = {}
    last: str | None = None

    def close() -> None:
        if not block:
            return
        if not block.get("q"):
            dropped["parse: answer without a question"] += 1
        elif not block.get("a"):
            dropped["parse: question without an answer"] += 1
        elif not block.get("type"):
            dropped["parse: pair without a type line"] += 1
        elif not loose(block["type"]) or loose(block["type"]) not in lookup:
            dropped["parse: type names no category"] += 1
        else:
            pairs.append(ParsedPair(lookup[loose(block["type"])], block["q"].strip(), block["a"].strip()))
        block.clear()

    for raw in text.splitlines():
        line = _NUMBERING.sub("", raw.strip().strip("*").strip()) if raw.strip() else ""
        match = _FIELD.match(line)
        if match is None:
            if line and last == "a" and "type" not in block:
                block["a"] += " " + line  # an answer that runs over lines
            continue
        key, value = match.group(1).lower(), match.group(2).strip().strip("*").strip()
        if key == "q" or key in block:  # a new question, or a repeated line: a new block
            close()
        block[key] = value
        last = key
    close()
    if text.strip() and not pairs and not dropped:
        dropped["parse: no Q:/A:/type: block in the output"] += 1
    return pairs, dropped


def parse_list(text: str) -> tuple[list[str], Counter[str]]:
    """Read a numbered list ("1. ...", "2) ..."); lines without a number are commentary
    and skipped, an empty item is dropped."""
    items: list[str] = []
    dropped: Counter[str] = Counter()
    for raw in text.splitlines():
        match = re.match(r"^\s*\d{1,3}[.)]\s*(.*)$", raw)
        if match is None:
            continue
        item = match.group(1).strip().strip("*").strip()
        if item:
            items.append(item)
        else:
            dropped["parse: empty list item"] += 1
    if text.strip() and not items and not dropped:
        dropped["parse: no numbered item in the output"] += 1
    return items, dropped


def parse_fact(item: str) -> tuple[str, str] | None:
    """B.1.2's ``[SUBJECT] and [OBJECT]``: split at the first " and "."""
    subject, sep, obj = item.strip().strip("[]").partition(" and ")
    subject, obj = subject.strip(" []\"'"), obj.strip(" []\"'.")
    return (subject, obj) if sep and subject and obj else None


def is_true(verdict: str) -> bool:
    """A Self-Check verdict is true when it starts with "True" (quotes and emphasis aside)."""
    return _TRUE.match(verdict) is not None
