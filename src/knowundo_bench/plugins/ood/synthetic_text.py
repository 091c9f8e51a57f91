"""OOD retain source ``synthetic_text``: general-knowledge passages the project writes
itself (arithmetic, units, calendar, alphabet, opposites) — offline, deterministic, and
about nothing in either KnowUnDo domain. The default ``ood_retain`` source."""

from __future__ import annotations

import random
import string

from pydantic import Field

from knowundo_bench.api import OodSourceInfo, Params, RetainText, hookimpl

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
UNITS = [
    ("minutes", "hours", 60),
    ("hours", "days", 24),
    ("days", "weeks", 7),
    ("months", "years", 12),
    ("centimetres", "metres", 100),
    ("grams", "kilograms", 1000),
]
OPPOSITES = [
    ("hot", "cold"),
    ("up", "down"),
    ("early", "late"),
    ("full", "empty"),
    ("light", "dark"),
    ("open", "closed"),
    ("fast", "slow"),
    ("wet", "dry"),
    ("loud", "quiet"),
    ("north", "south"),
]


def _passage(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        op, value = rng.choice([("plus", a + b), ("times", a * b)])
        return f"Question: What is {a} {op} {b}?\nAnswer: {a} {op} {b} is {value}."
    if kind == 1:
        small, big, factor = rng.choice(UNITS)
        n = rng.randint(2, 12)
        return f"Question: How many {small} are in {n} {big}?\nAnswer: There are {n * factor} {small} in {n} {big}."
    if kind == 2:
        day = rng.randrange(7)
        return f"Question: Which day comes after {DAYS[day]}?\nAnswer: {DAYS[(day + 1) % 7]} comes after {DAYS[day]}."
    if kind == 3:
        index = rng.randrange(25)
        letter, following = string.ascii_uppercase[index], string.ascii_uppercase[index + 1]
        return f"Question: Which letter follows {letter} in the alphabet?\nAnswer: The letter {following}."
    word, opposite = rng.choice(OPPOSITES)
    if rng.random() < 0.5:
        word, opposite = opposite, word
    return f"Question: What is the opposite of {word}?\nAnswer: The opposite of {word} is {opposite}."


class SyntheticTextParams(Params):
    n_passages: int = Field(400, ge=1, le=100_000)
    text_seed: int = 0


def load(params: SyntheticTextParams) -> list[RetainText]:
    rng = random.Random(params.text_seed)
    return [RetainText(text=_passage(rng)) for _ in range(params.n_passages)]


@hookimpl
def register_ood_sources() -> list[OodSourceInfo]:
    return [
        OodSourceInfo(
            name="synthetic_text",
            description="General-knowledge passages generated offline.",
            params=SyntheticTextParams,
            load=load,
        )
    ]
