"""How each kind of category turns prompts into question-answer pairs (section 2.2).

A recipe is a coroutine: it yields a list of :class:`GenerationRequest` and receives
the generator's texts for them, one per request, until it returns an
:class:`InstanceYield`. :func:`together` runs many recipes as one, so that a window
of instances sends each round of prompts to the generator as one batch (an API's
concurrency, a local model's batch).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

from knowundo_bench.build.generation import Category, GenerationRequest
from knowundo_bench.build.demonstrations import leaked_values
from knowundo_bench.build.parsing import ParsedPair, is_true, loose, mentions, parse_fact, parse_list, parse_qa
from knowundo_bench.build.prompts import render
from knowundo_bench.build.spec import Attributes, ResolvedBuild

# B.1.2: "Please generate 2 queries related to how we could rewrite the ending ..."
QUERIES_PER_FACT = 2


@dataclass(frozen=True)
class BuiltPair:
    instance: str
    category: str
    scope: str
    question: str
    answer: str


@dataclass
class InstanceYield:
    """What one instance's recipes produced, and what they dropped and why."""

    pairs: list[BuiltPair] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    checked: int = 0  # Self-Check verdicts asked
    passed: int = 0  # ... of which "True"

    def merge(self, other: InstanceYield) -> None:
        self.pairs += other.pairs
        self.dropped.update(other.dropped)
        self.checked += other.checked
        self.passed += other.passed


Recipe = Generator[list[GenerationRequest], list[str], InstanceYield]


def category_value(instance: Attributes, category: Category) -> str | None:
    """What the instance's attributes say for ``category`` ("father is ..., the mother
    is ..."), or None when one is missing."""
    if not category.attributes or any(a not in instance for a in category.attributes):
        return None
    if category.display is not None:
        return render(category.display, instance)
    return ", ".join(instance[a] for a in category.attributes)


def attribute_lines(instance: Attributes, categories: Sequence[Category]) -> str:
    """B.2's attribute list, one line per category, Retention Scope first: "Parents:
    father is ..., the mother is ...". A missing attribute of a kept category is left
    for the generator to make up, as B.2's "Awards: <Generate random award>"."""
    lines = []
    for category in sorted(categories, key=lambda c: c.scope != "retention"):
        value = category_value(instance, category)
        lines.append(f"{category.name}: {value if value is not None else f'<Generate random {category.name.lower()}>'}")
    return "\n".join(lines)


def keeps_value(category: Category, instance: Attributes, answer: str) -> bool:
    """An Unlearn Scope answer must hold the private value it is about (one of the
    category's attributes), or there is nothing in it to forget."""
    if category.scope != "unlearn" or not category.attributes:
        return True
    return any(mentions(answer, instance[a]) for a in category.attributes if a in instance)


def answered_by_question(category: Category, instance: Attributes, pair: ParsedPair) -> bool:
    """Whether the question gives its own answer away: it holds the value the answer is
    about ("Is ada@x.org Ada's email?"), or the answer says no word the question does not
    ("What is Ada's name?" → "Ada's name is Ada."). Such a pair is answered by copying
    the question and would inflate Retention Success (issue 31). The instance's name is
    no such value: B.2 has every question name the instance."""
    if not category.attributes:
        return False  # requests (copyright): no attribute value to give away
    values = [instance[a] for a in category.attributes if a in instance and a != "name"]
    if any(mentions(pair.question, value) for value in values):
        return True
    return not set(loose(pair.answer).split()) - set(loose(pair.question).split())


def copies_example(build: ResolvedBuild, instance: Attributes, *texts: str) -> bool:
    """With demonstrations, whether a text holds a value of the example instance that the
    instance does not have (the example author's name, email...): copied, not generated."""
    if build.demonstrator is None:
        return False
    leaked = leaked_values(build.spec.domain, instance)
    return any(mentions(text, value) for text in texts for value in leaked)


def failed_check(build: ResolvedBuild, instance: Attributes, pair: ParsedPair) -> str | None:
    """Why a generated pair cannot be kept (the drop reason the datacard counts), or None."""
    if not mentions(pair.question, instance["name"]):
        return "check: question does not name the instance"
    if not keeps_value(pair.category, instance, pair.answer):
        return "check: Unlearn Scope answer lacks the attribute value"
    if answered_by_question(pair.category, instance, pair):
        return "check: question holds its answer"
    if copies_example(build, instance, pair.question, pair.answer):
        return "check: holds the demonstration's example instance"
    return None


def _self_check(
    build: ResolvedBuild, requests: list[GenerationRequest], result: InstanceYield
) -> Generator[list[GenerationRequest], list[str], list[bool]]:
    """Ask each Self-Check prompt; keep what starts with "True" (B.1.2)."""
    if not build.spec.self_check or not requests:
        return [True] * len(requests)
    verdicts = yield requests
    kept = [is_true(v) for v in verdicts]
    result.checked += len(kept)
    result.passed += sum(kept)
    result.dropped["self-check: not True"] += len(kept) - sum(kept)
    return kept


def joint_recipe(build: ResolvedBuild, instance: Attributes, categories: Sequence[Category]) -> Recipe:
    """B.2: one prompt asks for every category's pairs as ``Q:/A:/type:`` blocks; pairs
    must name the instance in the question; each is Self-Checked."""
    result = InstanceYield()
    counts = tuple(build.count(c) for c in categories)
    attributes = attribute_lines(instance, categories)
    retention = [c for c in categories if c.scope == "retention"]
    prompt = render(
        build.prompts["privacy_qa"],
        {
            **instance,
            "attributes": attributes,
            "total": sum(counts),
            "retention_total": sum(build.count(c) for c in retention),
            "retention_count": len(retention),
        },
    )
    [text] = yield [GenerationRequest("privacy_qa", prompt, instance, tuple(categories), counts)]
    if not text.strip():
        result.dropped["empty output"] += 1
    parsed, dropped = parse_qa(text, categories)
    result.dropped.update(dropped)
    wanted = dict(zip((c.name for c in categories), counts, strict=True))
    taken: Counter[str] = Counter()
    candidates = []
    for pair in parsed:
        failed = failed_check(build, instance, pair)
        if failed is not None:
            result.dropped[failed] += 1
        elif taken[pair.category.name] >= wanted[pair.category.name]:
            result.dropped["parse: more pairs than asked for"] += 1
        else:
            taken[pair.category.name] += 1
            candidates.append(pair)
    yield from _checked(build, instance, candidates, result)
    return result


def _checked(build: ResolvedBuild, instance: Attributes, candidates: list[ParsedPair], result: InstanceYield) -> Recipe:
    """Self-Check pairs of categories about attributes against the attributes (a second
    prompt, as B.1.2 checks facts); keep those judged "True" in ``result``."""
    # the facts to judge against: only what the instance states (no "<Generate random ...>")
    about = [c for c in build.categories if c.attributes and category_value(instance, c) is not None]
    checked = [p for p in candidates if p.category.attributes]
    checks = [
        GenerationRequest(
            "pair_self_check",
            render(
                build.prompts["pair_self_check"],
                {
                    **instance,
                    "attributes": attribute_lines(instance, about),
                    "question": p.question,
                    "answer": p.answer,
                },
            ),
            instance,
            (p.category,),
            item={"question": p.question, "answer": p.answer},
        )
        for p in checked
    ]
    verdicts = dict(zip(map(id, checked), (yield from _self_check(build, checks, result)), strict=True))
    for pair in candidates:
        if verdicts.get(id(pair), True):
            result.pairs.append(
                BuiltPair(instance["name"], pair.category.name, pair.category.scope, pair.question, pair.answer)
            )
    return result


def _answers(
    build: ResolvedBuild, instance: Attributes, category: Category, queries: list[str], result: InstanceYield
) -> Recipe:
    """Answer each request that names the instance with the ``answer`` prompt; an empty
    answer is dropped."""
    named = [q for q in queries if mentions(q, instance["name"])]
    result.dropped["check: question does not name the instance"] += len(queries) - len(named)
    queries = named
    requests = [
        GenerationRequest(
            "answer",
            render(build.prompts["answer"], {**instance, "query": q, **_about(instance, category)}),
            instance,
            (category,),
            item={"query": q},
        )
        for q in queries
    ]
    answers = (yield requests) if requests else []
    candidates = []
    for query, answer in zip(queries, answers, strict=True):
        pair = ParsedPair(category, query, answer.strip())
        failed = "empty answer" if not pair.answer else failed_check(build, instance, pair)
        if failed is not None:
            result.dropped[failed] += 1
        else:
            candidates.append(pair)
    return (yield from _checked(build, instance, candidates, result))


def _about(instance: Attributes, category: Category) -> dict[str, str]:
    """The ``{category}`` and ``{value}`` fields of request and answer prompts."""
    return {"category": category.name, "value": category_value(instance, category) or ""}


def _listed(text: str, count: int, result: InstanceYield) -> list[str]:
    if not text.strip():
        result.dropped["empty output"] += 1
    items, dropped = parse_list(text)
    result.dropped.update(dropped)
    result.dropped["parse: more items than asked for"] += max(0, len(items) - count)
    return items[:count]


def queries_recipe(build: ResolvedBuild, instance: Attributes, category: Category) -> Recipe:
    """B.1.1 and B.1.3: a prompt filled with the instance lists requests; each is answered."""
    result = InstanceYield()
    count = build.count(category)
    assert category.prompt is not None
    prompt = render(build.prompts[category.prompt], {**instance, "count": count, **_about(instance, category)})
    [text] = yield [GenerationRequest("queries", prompt, instance, (category,), (count,))]
    return (yield from _answers(build, instance, category, _listed(text, count, result), result))


def facts_recipe(build: ResolvedBuild, instance: Attributes, category: Category) -> Recipe:
    """B.1.2: facts about the instance ("[SUBJECT] and [OBJECT]" with a tragic ending),
    Self-Checked; each fact that survives gives two rewrite requests, each answered."""
    result = InstanceYield()
    count = build.count(category)
    assert category.prompt is not None
    prompt = render(build.prompts[category.prompt], {**instance, "count": count, "category": category.name})
    [text] = yield [GenerationRequest("facts", prompt, instance, (category,), (count,))]
    facts = []
    for item in _listed(text, count, result):
        fact = parse_fact(item)
        if fact is None:
            result.dropped["parse: fact is not '[SUBJECT] and [OBJECT]'"] += 1
        else:
            facts.append(fact)

    def request(task: str, subject: str, obj: str, **extra: object) -> GenerationRequest:
        values = {**instance, "subject": subject, "object": obj, "category": category.name, **extra}
        return GenerationRequest(
            task,  # type: ignore[arg-type]
            render(build.prompts[task], values),
            instance,
            (category,),
            (QUERIES_PER_FACT,) if task == "fact_queries" else (),
            item={"subject": subject, "object": obj},
        )

    kept = yield from _self_check(build, [request("fact_self_check", s, o) for s, o in facts], result)
    facts = [fact for fact, keep in zip(facts, kept, strict=True) if keep]
    lists = (yield [request("fact_queries", s, o, count=QUERIES_PER_FACT) for s, o in facts]) if facts else []
    queries = [q for text in lists for q in _listed(text, QUERIES_PER_FACT, result)]
    return (yield from _answers(build, instance, category, queries, result))


def together(recipes: Sequence[Recipe]) -> Generator[list[GenerationRequest], list[str], list[InstanceYield]]:
    """Run ``recipes`` side by side: each round sends every recipe's requests as one batch."""
    results: list[InstanceYield | None] = [None] * len(recipes)
    pending: dict[int, list[GenerationRequest]] = {}
    for index, recipe in enumerate(recipes):
        try:
            pending[index] = next(recipe)
        except StopIteration as stop:
            results[index] = stop.value
    while pending:
        order = list(pending)
        texts = yield [request for index in order for request in pending[index]]
        offset, following = 0, {}
        for index in order:
            size = len(pending[index])
            try:
                following[index] = recipes[index].send(texts[offset : offset + size])
            except StopIteration as stop:
                results[index] = stop.value
            offset += size
        pending = following
    return [r if r is not None else InstanceYield() for r in results]


def instance_recipe(build: ResolvedBuild, instance: Attributes) -> Recipe:
    """Every category of one instance: the joint ones in one B.2 prompt, the others each
    by its own recipe, side by side."""
    joint = [c for c in build.categories if c.recipe == "joint"]
    parts: list[Recipe] = [joint_recipe(build, instance, joint)] if joint else []
    for category in build.categories:
        if category.recipe == "queries":
            parts.append(queries_recipe(build, instance, category))
        elif category.recipe == "facts":
            parts.append(facts_recipe(build, instance, category))
    merged = InstanceYield()
    for part in (yield from together(parts)):
        merged.merge(part)
    return merged
