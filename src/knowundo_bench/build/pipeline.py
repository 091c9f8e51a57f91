"""``knowundo-bench build``: generate, check, deduplicate, split and write a domain.

Stages (section 2.2, appendix B): each instance's recipes ask the generator for pairs
(or requests, then answers), Self-Check them and drop what fails a check; the whole
domain is then deduplicated, split into train and val per instance and category,
checked for val questions leaking into train, and instances short of pairs in a
scope are left out. The output is the ``local`` data source's format plus a datacard.

Nothing is paid for twice: every generator answer is cached on disk by prompt and
settings as it arrives, and each instance's outcome is written atomically once its
recipes end, so a killed build resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from knowundo_bench import __version__
from knowundo_bench.build.generation import GenerationRequest, Generator, GeneratorContext
from knowundo_bench.build.datacard import Datacard, Outcome, write_datacard
from knowundo_bench.build.demonstrations import with_demonstration
from knowundo_bench.build.parsing import contains, loose
from knowundo_bench.build.recipes import BuiltPair, InstanceYield, instance_recipe, together
from knowundo_bench.build.spec import Attributes, ResolvedBuild
from knowundo_bench.benchmark.pairs import SCOPES, SPLITS
from knowundo_bench.core.errors import InputError
from knowundo_bench.core.progress import ProgressBoard, Reporter
from knowundo_bench.records.atomic import atomic_write_text
from knowundo_bench.records.lock import LOCK_FILE
from knowundo_bench.core.cache import cache_home
from knowundo_bench.core.permissions import Granted

BUILD_FORMAT = 1
STATE = ".build"  # the output folder's working state: cached answers, finished instances
SPLIT_FILES = tuple(f"{scope}_{split}.json" for scope in SCOPES for split in SPLITS)
EMPTY = {"empty output", "empty answer"}  # drops a rerun may fix: never final

STAGES = {
    "privacy_qa": "generate pairs",
    "queries": "generate requests",
    "facts": "generate facts",
    "fact_queries": "generate requests",
    "pair_self_check": "self-check",
    "fact_self_check": "self-check",
    "answer": "answer requests",
}


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


class ResponseCache:
    """Generator answers on disk, one file per prompt and settings (written atomically)."""

    def __init__(self, folder: Path, identity: dict[str, Any]) -> None:
        self.folder = folder
        self.identity = identity

    def _path(self, prompt: str) -> Path:
        key = _digest({**self.identity, "prompt": prompt})
        return self.folder / key[:2] / f"{key}.json"

    def get(self, prompt: str) -> str | None:
        try:
            stored = json.loads(self._path(prompt).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        text = stored.get("text") if isinstance(stored, dict) and stored.get("prompt") == prompt else None
        return text if isinstance(text, str) else None

    def put(self, prompt: str, text: str) -> None:
        atomic_write_text(self._path(prompt), json.dumps({"prompt": prompt, "text": text}, ensure_ascii=False))


@dataclass
class Asking:
    """Sends requests to the generator through the cache, with a progress bar per stage."""

    generator: Generator
    cache: ResponseCache | None
    board: ProgressBoard
    stack: ExitStack
    demonstrate: Callable[[GenerationRequest], GenerationRequest] | None = None
    bars: dict[str, Reporter] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)  # sent to the generator, by task
    cache_hits: int = 0

    def bar(self, request: GenerationRequest) -> Reporter:
        """The stage's bar, opened when its first request comes (its total grows as they do)."""
        stage = STAGES[request.task]
        if stage not in self.bars:
            self.bars[stage] = self.stack.enter_context(self.board.task(stage, 0))
        return self.bars[stage]

    def __call__(self, requests: Sequence[GenerationRequest]) -> list[str]:
        if self.demonstrate is not None:
            requests = [self.demonstrate(request) for request in requests]
        texts: list[str | None] = [None] * len(requests)
        misses = []
        for index, request in enumerate(requests):
            self.bar(request).extend(1)
            cached = self.cache.get(request.cache_text) if self.cache is not None else None
            if cached is None:
                misses.append(index)
            else:
                texts[index] = cached
                self.cache_hits += 1
                self.bar(request).advance()
        if misses:
            for position, text in self.generator.generate([requests[i] for i in misses]):
                index = misses[position]
                request = requests[index]
                texts[index] = text if isinstance(text, str) else ""
                self.requests[request.task] += 1
                if self.cache is not None and texts[index].strip():  # type: ignore[union-attr]
                    # an empty answer is not kept: a rerun asks again (a misconfigured endpoint fixed)
                    self.cache.put(request.cache_text, texts[index] or "")
                self.bar(request).advance()
        return [text or "" for text in texts]


@dataclass(frozen=True)
class InstanceRecord:
    """One instance's outcome as written to ``.build/instances``: reused when its key
    (the instance, categories, prompts, generator settings) is unchanged."""

    key: str
    name: str
    pairs: list[dict[str, str]]
    dropped: dict[str, int]
    checked: int
    passed: int

    def as_yield(self) -> InstanceYield:
        return InstanceYield([BuiltPair(**p) for p in self.pairs], Counter(self.dropped), self.checked, self.passed)


def instance_key(build: ResolvedBuild, instance: Attributes, settings: dict[str, Any]) -> str:
    return _digest(
        {
            "format": BUILD_FORMAT,
            "instance": instance,
            "categories": [c.model_dump(mode="json") for c in build.categories],
            "questions_per_category": build.spec.questions_per_category,
            "prompts": build.prompts,
            "generator": {"name": build.generator.name, **settings},
            "self_check": build.spec.self_check,
            "demonstrations": build.spec.demonstrations,
            "domain": build.spec.domain,
            "generator_params": build.generator_params.model_dump(mode="json"),
            "harness": __version__,  # parsers and checks change between versions; cached answers stay
        }
    )


def _record_path(state: Path, name: str) -> Path:
    return state / "instances" / f"{hashlib.sha256(name.encode()).hexdigest()[:20]}.json"


def _load_record(path: Path, key: str) -> InstanceYield | None:
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        record = InstanceRecord(**stored)
    except (OSError, ValueError, TypeError):
        return None
    return record.as_yield() if record.key == key else None


def check_output_folder(output: Path) -> None:
    """The output is a new or empty folder, or an earlier build's (resumed): never
    someone's other files."""
    if output.exists() and not output.is_dir():
        raise InputError(f"{output} is a file, not a folder", source="--output")
    others = [entry for entry in output.iterdir() if entry.name != LOCK_FILE] if output.is_dir() else []
    if others and not (output / STATE).is_dir():
        raise InputError(f"folder {output} holds other files; give a new or empty folder", source="--output")


def deduplicate(pairs: list[BuiltPair]) -> tuple[list[BuiltPair], int, int]:
    """Keep the first of pairs whose questions are equal (exact) or equal once case,
    punctuation and spacing are folded (near)."""
    seen_exact: set[str] = set()
    seen_near: set[str] = set()
    kept, exact, near = [], 0, 0
    for pair in pairs:
        near_key = loose(pair.question) or pair.question  # a question of symbols only: exact
        if pair.question in seen_exact:
            exact += 1
        elif near_key in seen_near:
            near += 1
        else:
            kept.append(pair)
        seen_exact.add(pair.question)
        seen_near.add(near_key)
    return kept, exact, near


def split_pairs(pairs: list[BuiltPair], fraction: float, seed: int) -> dict[BuiltPair, str]:
    """Per instance and category, a seeded ``fraction`` of the pairs (at least one and
    at most all but one, when there are two or more) goes to val. Lone pairs (a
    category that gave one pair for an instance) are pooled per scope and split the
    same way, so that a generator giving one pair per category still yields val pairs."""
    groups: dict[tuple[str, str], list[BuiltPair]] = {}
    for pair in pairs:
        groups.setdefault((pair.instance, pair.category), []).append(pair)
    pools: dict[str, list[BuiltPair]] = {}
    for group in list(groups.values()):
        if len(group) == 1:
            pools.setdefault(group[0].scope, []).append(group[0])
    parts = {key: group for key, group in groups.items() if len(group) >= 2}
    parts.update({("", f"lone {scope} pairs"): pool for scope, pool in pools.items()})
    split: dict[BuiltPair, str] = {}
    for (instance, category), group in parts.items():
        order = list(range(len(group)))
        random.Random(f"{seed}/{instance}/{category}").shuffle(order)
        n_val = min(max(round(len(group) * fraction), 1), len(group) - 1) if len(group) >= 2 else 0
        for rank, index in enumerate(order):
            split[group[index]] = "val" if rank < n_val else "train"
    return split


def move_leaks(split: dict[BuiltPair, str]) -> int:
    """A val question that a train question contains as whole words (or that contains
    one), once folded, is moved to train: the model would have seen it. Returns how many
    moved."""
    train = [q for p, s in split.items() if s == "train" and (q := loose(p.question))]
    moved = 0
    for pair, where in list(split.items()):
        question = loose(pair.question)
        if where == "val" and question:
            if any(contains(t, question) or contains(question, t) for t in train):
                split[pair] = "train"
                moved += 1
    return moved


def finish(build: ResolvedBuild, yields: list[tuple[str, InstanceYield]]) -> tuple[Outcome, dict[BuiltPair, str]]:
    """Domain-wide quality steps over every instance's pairs."""
    dropped: Counter[str] = Counter()
    for _, item in yields:
        dropped.update(item.dropped)
    pairs, exact, near = deduplicate([p for _, item in yields for p in item.pairs])
    split = split_pairs(pairs, build.spec.val_fraction, build.spec.seed)
    leaked = move_leaks(split)
    left_out: dict[str, str] = {}
    minimum = build.spec.min_pairs_per_scope
    for name, _ in yields:
        for scope in SCOPES:
            have = sum(1 for p in pairs if p.instance == name and p.scope == scope)
            if have < minimum and name not in left_out:
                left_out[name] = f"{have} {scope} pairs, fewer than min_pairs_per_scope ({minimum})"
    pairs = [p for p in pairs if p.instance not in left_out]
    split = {p: s for p, s in split.items() if p.instance not in left_out}
    outcome = Outcome(
        pairs=pairs,
        dropped=dropped,
        checked=sum(item.checked for _, item in yields),
        passed=sum(item.passed for _, item in yields),
        exact_duplicates=exact,
        near_duplicates=near,
        leaked=leaked,
        left_out=left_out,
    )
    return outcome, split


def run_build(
    build: ResolvedBuild,
    output: Path,
    board: ProgressBoard,
    generator: Generator | None = None,
    granted: Granted | None = None,
) -> Datacard:
    """Build the domain into ``output`` (resuming an earlier build there) and return its datacard."""
    check_output_folder(output)
    state = output / STATE
    try:
        state.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create {state} ({error.strerror})", source="--output") from None
    if generator is None:
        cache_dir = cache_home()  # shared: converted weights
        context = GeneratorContext(build.spec.seed, cache_dir, log=board.log, granted=granted or Granted())
        generator = build.generator.create(build.generator_params, context)
    settings = dict(generator.settings)
    cache = ResponseCache(state / "responses", {"generator": build.generator.name, **settings})
    yields: dict[str, InstanceYield] = {}
    with ExitStack() as stack:
        instances_bar = stack.enter_context(board.task("instances", len(build.instances)))
        demonstrate = None
        if build.demonstrator is not None:
            demonstrator = build.demonstrator
            demonstrate = lambda request: with_demonstration(request, build.spec.domain, demonstrator)  # noqa: E731
        asking = Asking(generator, cache if build.generator.cached else None, board, stack, demonstrate)
        pending: list[tuple[Attributes, str]] = []
        for instance in build.instances:
            key = instance_key(build, instance, settings)
            done = _load_record(_record_path(state, instance["name"]), key)
            if done is None:
                pending.append((instance, key))
            else:
                yields[instance["name"]] = done
                instances_bar.advance()
        if len(pending) < len(build.instances):
            board.log(f"resumed: {len(build.instances) - len(pending)} of {len(build.instances)} instances were built")
        window = max(1, int(generator.parallel))
        for start in range(0, len(pending), window):
            chunk = pending[start : start + window]
            rounds = together([instance_recipe(build, instance) for instance, _ in chunk])
            try:
                requests = next(rounds)
                while True:
                    requests = rounds.send(asking(requests) if requests else [])
            except StopIteration as stop:
                results: list[InstanceYield] = stop.value
            for (instance, key), result in zip(chunk, results, strict=True):
                yields[instance["name"]] = result
                instances_bar.advance()
                if result.dropped.keys() & EMPTY:
                    continue  # not final: a rerun asks its empty prompts again
                record = InstanceRecord(
                    key, instance["name"], [asdict(p) for p in result.pairs], dict(result.dropped),
                    result.checked, result.passed,
                )  # fmt: skip
                atomic_write_text(_record_path(state, instance["name"]), json.dumps(asdict(record), ensure_ascii=False))
    ordered = [(i["name"], yields[i["name"]]) for i in build.instances]
    outcome, split = finish(build, ordered)
    # An earlier build's domain in the folder no longer matches the spec: its datacard goes
    # first, so that a folder with split files but no datacard reads as unfinished.
    for name in ("datacard.json", "DATACARD.md", *SPLIT_FILES):
        (output / name).unlink(missing_ok=True)
    for scope in SCOPES:
        for part in SPLITS:
            if not any(p.scope == scope and split[p] == part for p in outcome.pairs):
                raise InputError(
                    f"the build left no {scope}/{part} pairs ({_drop_summary(outcome, asking)}); "
                    f"nothing was written but the state in {state}"
                )
    files: dict[str, str] = {}
    for scope in SCOPES:
        for part in SPLITS:
            records = [
                {"text": p.question, "labels": p.answer, "instance": p.instance, "category": p.category}
                for p in outcome.pairs
                if p.scope == scope and split[p] == part
            ]
            text = json.dumps(records, indent=1, ensure_ascii=False) + "\n"
            atomic_write_text(output / f"{scope}_{part}.json", text)
            files[f"{scope}_{part}.json"] = hashlib.sha256(text.encode()).hexdigest()
    card = Datacard.describe(build, generator, outcome, split, asking.requests, asking.cache_hits, files)
    write_datacard(card, output)
    return card


def _drop_summary(outcome: Outcome, asking: Asking) -> str:
    asked = sum(asking.requests.values()) + asking.cache_hits
    drops = ", ".join(f"{reason}: {n}" for reason, n in outcome.dropped.most_common(3) if n) or "none dropped"
    left = f", {len(outcome.left_out)} instances left out" if outcome.left_out else ""
    return f"{asked} generations this run; {drops}{left}"
