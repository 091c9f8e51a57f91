"""The benchmark's data model: question-answer pairs split by scope and split.

Every data source plugin returns a flat list of :class:`QAPair`; :class:`Benchmark`
groups them into the four sets the protocol uses (forget = unlearn/train,
retain = retention/train, metrics on the val splits, vanilla training on all four).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from knowundo_bench.core.errors import InputError

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


def first_instances(pairs: list[QAPair], count: int) -> list[QAPair]:
    """Keep the pairs of the first ``count`` instances, in order of first appearance."""
    order: list[str] = []
    for pair in pairs:
        if pair.instance is not None and pair.instance not in order:
            order.append(pair.instance)
    keep = set(order[:count])
    return [pair for pair in pairs if pair.instance in keep]


def split_holdout(pairs: list[QAPair], instances: int | None, holdout: int) -> tuple[list[QAPair], list[QAPair]]:
    """The benchmark's pairs and the holdout's: the first ``instances`` instances (all but
    the last ``holdout`` when None) and the ``holdout`` instances after them."""
    order: list[str] = []
    for pair in pairs:
        if pair.instance is None:
            raise InputError("data.holdout_instances: a pair has no instance to set aside by")
        if pair.instance not in order:
            order.append(pair.instance)
    kept = len(order) - holdout if instances is None else instances
    if kept < 1 or kept + holdout > len(order):
        raise InputError(
            f"data.holdout_instances: {holdout} instances set aside leave too few of the {len(order)} the data has"
            + ("" if instances is None else f" for data.instances {instances}")
        )
    benchmark, aside = set(order[:kept]), set(order[kept : kept + holdout])
    return [p for p in pairs if p.instance in benchmark], [p for p in pairs if p.instance in aside]


@dataclass(frozen=True)
class Benchmark:
    """A domain's QA pairs grouped by scope and split, and the holdout instances' pairs
    (``data.holdout_instances``: never trained on; empty without a holdout)."""

    pairs: tuple[QAPair, ...]
    holdout: tuple[QAPair, ...] = ()

    @property
    def non_members(self) -> list[QAPair]:
        """Membership inference's non-members: the holdout's Unlearn Scope pairs (both splits)."""
        return [p for p in self.holdout if p.scope == "unlearn"]

    def trained_pairs(self, unlearn_scope: str = "include") -> list[QAPair]:
        """What the vanilla fine-tuning trains on: every pair, or (``exclude``, the retrain
        oracle) every pair but the Unlearn Scope's."""
        return list(self.pairs) if unlearn_scope == "include" else [p for p in self.pairs if p.scope != "unlearn"]

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
        """A content hash: part of the vanilla cache key (the holdout's pairs too, when set)."""
        content: object = [p.model_dump() for p in self.pairs]
        if self.holdout:
            content = {"pairs": content, "holdout": [p.model_dump() for p in self.holdout]}
        payload = json.dumps(content, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def check_complete(self, source: str) -> None:
        for scope in SCOPES:
            for split in SPLITS:
                if not self.select(scope, split):
                    raise InputError(f"empty split: no {scope}/{split} pairs", source=source)
