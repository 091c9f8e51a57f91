"""The datacard of a built domain: what went in, what came out, what was dropped and why.

``datacard.json`` is the record (a typed model); ``DATACARD.md`` renders it for people.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from knowundo_bench import __version__
from knowundo_bench.build.generation import Category, Generator
from knowundo_bench.benchmark.pairs import SCOPES, SPLITS
from knowundo_bench.records.atomic import atomic_write_text

if TYPE_CHECKING:
    from knowundo_bench.build.recipes import BuiltPair
    from knowundo_bench.build.spec import ResolvedBuild

DATACARD_FORMAT = 1


@dataclass
class Outcome:
    """What a build produced: the pairs kept, and the counts its datacard reports."""

    pairs: list[BuiltPair]
    dropped: Counter[str]
    checked: int
    passed: int
    exact_duplicates: int
    near_duplicates: int
    leaked: int
    left_out: dict[str, str]


class InstanceCounts(BaseModel):
    name: str
    unlearn: int
    retention: int


class SelfCheck(BaseModel):
    enabled: bool
    asked: int
    passed: int
    pass_rate: float | None  # passed / asked; None when nothing was asked


class Datacard(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: int = DATACARD_FORMAT
    name: str
    domain: str
    harness_version: str
    created: str
    seed: int
    generator: dict[str, Any]  # name and settings (never a secret)
    categories: list[Category]
    questions_per_category: int
    val_fraction: float
    min_pairs_per_scope: int
    instances: list[InstanceCounts]
    instances_left_out: dict[str, str]  # name -> why
    counts: dict[str, dict[str, int]]  # scope -> split -> pairs
    category_counts: dict[str, dict[str, int]]  # category -> split -> pairs
    self_check: SelfCheck
    requests: dict[str, int]  # sent to the generator, by prompt kind
    cache_hits: int
    dropped: dict[str, int]  # reason -> generated items dropped
    duplicates: dict[str, int]  # exact, near
    leakage: dict[str, int]  # val questions found in train, moved there
    prompts: dict[str, str]
    files: dict[str, str]  # file -> sha256

    @classmethod
    def describe(
        cls,
        build: ResolvedBuild,
        generator: Generator,
        outcome: Outcome,
        split: Mapping[BuiltPair, str],
        requests: Counter[str],
        cache_hits: int,
        files: dict[str, str],
    ) -> Datacard:
        spec = build.spec
        counts: dict[str, dict[str, int]] = {s: {p: 0 for p in SPLITS} for s in SCOPES}
        by_category: dict[str, dict[str, int]] = {c.name: {p: 0 for p in SPLITS} for c in build.categories}
        per_instance: dict[str, Counter[str]] = {}
        for pair in outcome.pairs:
            counts[pair.scope][split[pair]] += 1
            by_category[pair.category][split[pair]] += 1
            per_instance.setdefault(pair.instance, Counter())[pair.scope] += 1
        return cls(
            name=spec.name,
            domain=spec.domain,
            harness_version=__version__,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            seed=spec.seed,
            generator={"name": build.generator.name, **generator.settings},
            categories=list(build.categories),
            questions_per_category=spec.questions_per_category,
            val_fraction=spec.val_fraction,
            min_pairs_per_scope=spec.min_pairs_per_scope,
            instances=[
                InstanceCounts(name=name, unlearn=c["unlearn"], retention=c["retention"])
                for name, c in per_instance.items()
            ],
            instances_left_out=outcome.left_out,
            counts=counts,
            category_counts=by_category,
            self_check=SelfCheck(
                enabled=spec.self_check,
                asked=outcome.checked,
                passed=outcome.passed,
                pass_rate=outcome.passed / outcome.checked if outcome.checked else None,
            ),
            requests=dict(requests),
            cache_hits=cache_hits,
            dropped={reason: n for reason, n in outcome.dropped.most_common() if n},
            duplicates={"exact": outcome.exact_duplicates, "near": outcome.near_duplicates},
            leakage={"val_in_train_moved": outcome.leaked},
            prompts=build.prompts,
            files=files,
        )

    def markdown(self) -> str:
        total = sum(sum(v.values()) for v in self.counts.values())
        rate = f"{100 * self.self_check.pass_rate:.1f}%" if self.self_check.pass_rate is not None else "–"
        lines = [
            f"# Datacard: {self.name}",
            "",
            f"A KnowUnDo-style **{self.domain}** domain built by knowundo-bench {self.harness_version} "
            f"on {self.created} (seed {self.seed}): {total} question-answer pairs about "
            f"{len(self.instances)} instances. Load it with `data: {{source: local, path: <this folder>}}`.",
            "",
            "## Counts",
            "",
            "| scope | train | val |",
            "| --- | --- | --- |",
            *(f"| {s} | {self.counts[s]['train']} | {self.counts[s]['val']} |" for s in SCOPES),
            "",
            "| category | scope | train | val |",
            "| --- | --- | --- | --- |",
            *(
                f"| {c.name} | {c.scope} | {self.category_counts[c.name]['train']} | "
                f"{self.category_counts[c.name]['val']} |"
                for c in self.categories
            ),
            "",
            "## Generator",
            "",
            *(f"- {key}: `{value}`" for key, value in self.generator.items()),
            f"- requests sent: {sum(self.requests.values())} "
            f"({', '.join(f'{k} {v}' for k, v in self.requests.items()) or 'none'}); "
            f"answers reused from the cache: {self.cache_hits}",
            "",
            "## Quality",
            "",
            f"- Self-Check: {'on' if self.self_check.enabled else 'off'}; {self.self_check.passed} of "
            f"{self.self_check.asked} judged `True` (pass rate {rate})",
            f"- duplicates removed: {self.duplicates['exact']} exact, {self.duplicates['near']} near "
            "(equal once case, punctuation and spacing are folded)",
            f"- val questions found in train and moved there: {self.leakage['val_in_train_moved']}",
            f"- instances left out (fewer than {self.min_pairs_per_scope} pairs in a scope): "
            + (", ".join(f"{k} ({v})" for k, v in self.instances_left_out.items()) or "none"),
            "",
            "| dropped because | count |",
            "| --- | --- |",
            *(f"| {reason} | {n} |" for reason, n in self.dropped.items()),
            *([] if self.dropped else ["| (nothing dropped) | 0 |"]),
            "",
            "## Instances",
            "",
            "| instance | unlearn pairs | retention pairs |",
            "| --- | --- | --- |",
            *(f"| {i.name} | {i.unlearn} | {i.retention} |" for i in self.instances),
            "",
            "## Prompts",
            "",
        ]
        for name, template in self.prompts.items():
            lines += [f"### {name}", "", "```text", template, "```", ""]
        lines += ["## Files", "", *(f"- `{name}`: sha256 `{digest}`" for name, digest in self.files.items()), ""]
        return "\n".join(lines)


def write_datacard(card: Datacard, output: Path) -> None:
    atomic_write_text(output / "DATACARD.md", card.markdown())
    atomic_write_text(output / "datacard.json", card.model_dump_json(indent=2) + "\n")
