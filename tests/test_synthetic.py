"""Tests of the deterministic synthetic-authors generator."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import pytest

from knowundo_bench.benchmark.files import infer_instances
from knowundo_bench.benchmark.pairs import Benchmark, QAPair
from knowundo_bench.plugins.data.synthetic_authors import (
    ATTRIBUTES,
    AWARDS,
    CITIES,
    EMAIL_DOMAINS,
    GENRES,
    MAX_AUTHORS,
    PROFESSIONS,
    STREETS,
    generate_authors,
)

EMAIL = re.compile(r"[a-z0-9.]+\d+@(" + "|".join(re.escape(d) for d in EMAIL_DOMAINS) + r")")


def _attribute(pair: QAPair) -> str:
    """Recover the attribute a question asks about from its wording."""
    q = pair.question.lower()
    if "email" in q:
        return "email"
    if "parent" in q:
        return "parents"
    if "address" in q or "live" in q:
        return "address"
    if "award" in q or "prize" in q or "honoured" in q:
        return "awards"
    if "genre" in q:
        return "genre"
    if "born" in q or "birth" in q:
        return "born"
    return "name"


@pytest.fixture(scope="module")
def pairs() -> list[QAPair]:
    return generate_authors(20, seed=3)


def test_deterministic() -> None:
    assert generate_authors(10, seed=7) == generate_authors(10, seed=7)
    assert generate_authors(10, seed=0) == generate_authors(10)


def test_different_seed_gives_different_authors() -> None:
    a, b = generate_authors(10, seed=1), generate_authors(10, seed=2)
    assert a != b
    assert Benchmark(tuple(a)).instances != Benchmark(tuple(b)).instances


def test_global_random_untouched() -> None:
    import random

    random.seed(123)
    expected = random.random()
    random.seed(123)
    generate_authors(5, seed=9)
    assert random.random() == expected


@pytest.mark.parametrize("n", [1, 5, 200])
def test_n_authors_respected(n: int) -> None:
    pairs = generate_authors(n, seed=0)
    instances = Benchmark(tuple(pairs)).instances
    assert len(instances) == n
    assert len(set(instances)) == n
    assert all(pair.instance is not None for pair in pairs)


def test_grouped_by_author(pairs: list[QAPair]) -> None:
    order = [p.instance for p in pairs]
    # Each author's pairs are contiguous: the instance changes exactly n-1 times.
    changes = sum(1 for a, b in zip(order, order[1:], strict=False) if a != b)
    assert changes == 19


def test_invalid_n_authors() -> None:
    with pytest.raises(ValueError):
        generate_authors(0)
    with pytest.raises(ValueError):
        generate_authors(-3)
    with pytest.raises(ValueError):
        generate_authors(MAX_AUTHORS + 1)
    assert MAX_AUTHORS >= 200


def test_every_author_has_all_scope_split_combinations(pairs: list[QAPair]) -> None:
    combos: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for pair in pairs:
        combos[pair.instance].add((pair.scope, pair.split))
    assert len(combos) == 20
    expected = {(s, t) for s in ("unlearn", "retention") for t in ("train", "val")}
    assert all(c == expected for c in combos.values())
    Benchmark(tuple(pairs)).check_complete(source="synthetic")


def test_questions_and_answers_name_the_author(pairs: list[QAPair]) -> None:
    for pair in pairs:
        assert pair.instance in pair.question
        assert pair.instance in pair.answer
        assert len(pair.answer.split()) < 20
        assert pair.answer.endswith(".")


def test_instances_match_name_inference(pairs: list[QAPair]) -> None:
    stripped = [p.model_copy(update={"instance": None}) for p in pairs]
    assert [p.instance for p in infer_instances(stripped)] == [p.instance for p in pairs]


def test_val_pairs_one_per_attribute(pairs: list[QAPair]) -> None:
    counts = Counter((p.instance, p.scope, p.split) for p in pairs)
    for name in {p.instance for p in pairs}:
        assert counts[(name, "retention", "val")] == 4
        assert counts[(name, "unlearn", "val")] == 3
        assert counts[(name, "retention", "train")] == 4 * 2
        assert counts[(name, "unlearn", "train")] == 3 * 2
    per_attr = Counter((p.instance, _attribute(p)) for p in pairs if p.split == "val")
    assert set(per_attr.values()) == {1}
    assert len(per_attr) == 20 * 7


def test_val_choice_varies(pairs: list[QAPair]) -> None:
    val_questions = {p.question.replace(p.instance, "X") for p in pairs if p.split == "val"}
    # With 20 authors the RNG picks more than one phrasing per attribute.
    assert len(val_questions) > 7


def test_unlearn_answers_state_private_facts(pairs: list[QAPair]) -> None:
    facts: dict[tuple[str, str], set[str]] = defaultdict(set)
    for pair in pairs:
        attribute = _attribute(pair)
        expected_scope = ATTRIBUTES[attribute][0]
        assert pair.scope == expected_scope
        if attribute == "email":
            match = EMAIL.search(pair.answer)
            assert match, pair.answer
            facts[(pair.instance, attribute)].add(match.group(0))
            first = pair.instance.split()[0].lower()
            assert match.group(0).startswith(first)
        elif attribute == "parents":
            found = [p for p in PROFESSIONS if p in pair.answer]
            assert found and "father" in pair.answer and "mother" in pair.answer, pair.answer
        elif attribute == "address":
            street = [s for s in STREETS if s in pair.answer]
            city = [c for c in CITIES if c in pair.answer]
            assert street and city and re.search(r"\d+ ", pair.answer), pair.answer
            facts[(pair.instance, attribute)].add(pair.answer.split(" at ")[-1].split(" is ")[-1].rstrip("."))
    # All phrasings of one author's email/address state the same fact.
    assert all(len(values) == 1 for values in facts.values())


def test_retention_answers_state_public_facts(pairs: list[QAPair]) -> None:
    for pair in pairs:
        if pair.scope != "retention":
            continue
        attribute = _attribute(pair)
        if attribute in ("name", "genre"):
            assert any(g in pair.answer for g in GENRES), pair.answer
        if attribute in ("name", "born"):
            assert re.search(r"\b(19[4-9]\d|2000)\b", pair.answer), pair.answer
            assert any(c in pair.answer for c in CITIES), pair.answer
        if attribute == "awards":
            assert any(a in pair.answer for a in AWARDS), pair.answer


def test_scopes_share_no_answer_text(pairs: list[QAPair]) -> None:
    unlearn = {p.answer for p in pairs if p.scope == "unlearn"}
    retention = {p.answer for p in pairs if p.scope == "retention"}
    assert unlearn and retention
    assert not unlearn & retention
    for answer in retention:
        assert "@" not in answer
        assert not any(s in answer for s in STREETS)
        assert "father" not in answer and "mother" not in answer


def test_several_phrasings_per_attribute() -> None:
    pairs = generate_authors(30, seed=5)
    templates: dict[str, set[str]] = defaultdict(set)
    for pair in pairs:
        templates[_attribute(pair)].add(pair.question.replace(pair.instance, "X"))
    assert set(templates) == set(ATTRIBUTES)
    assert all(len(t) >= 3 for t in templates.values()), templates
