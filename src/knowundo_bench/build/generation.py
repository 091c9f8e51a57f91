"""What a generator plugin receives and returns.

The pipeline renders a prompt (an appendix-B template filled with an instance's
attributes) into a :class:`GenerationRequest`; a :class:`Generator` answers a batch of
them with text. Generators never parse: the pipeline's strict parsers read every
answer the same way, whichever model (or template) wrote it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from knowundo_bench.benchmark.pairs import Scope
from knowundo_bench.core.permissions import Granted

Recipe = Literal["joint", "queries", "facts"]

# The prompt names (tasks) of the pipeline; each is a template in prompts.py.
Task = Literal[
    "privacy_qa",
    "pair_self_check",
    "queries",
    "facts",
    "fact_self_check",
    "fact_queries",
    "answer",
]


class Category(BaseModel):
    """A kind of knowledge about an instance and the scope it belongs to (section 2.2):
    privacy's Parents is Unlearn Scope, its Genre Retention Scope."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="as the generator's `type:` lines name it")
    scope: Scope
    attributes: tuple[str, ...] = Field(
        default=(), description="instance attributes it is about; Unlearn Scope answers must contain one"
    )
    display: str | None = Field(
        None, description="how the attributes read in the prompt, e.g. 'father is {father}, the mother is {mother}'"
    )
    recipe: Recipe = Field(
        "joint",
        description="joint: one Q/A/type prompt for all joint categories (B.2); queries: a prompt listing "
        "requests, each then answered (B.1.1, B.1.3); facts: facts, Self-Check, requests per fact (B.1.2)",
    )
    prompt: str | None = Field(None, description="queries/facts: the name of the prompt listing requests or facts")
    questions: int | None = Field(None, ge=1, description="pairs per instance (default: questions_per_category)")


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt for a generator.

    ``prompt`` is what a language model reads. The rest says what it asks for, so that
    an offline generator (``template``) can answer from the instance's attributes:
    ``task`` names the template, ``categories`` the categories it asks about with
    ``counts`` items each, ``item`` what is judged or answered (a pair's ``question`` and
    ``answer``, a fact's ``subject`` and ``object``, a ``query``). ``demonstrations``,
    when the spec asks for them, are worked examples for a made-up instance, ``(prompt,
    answer)`` each: chat generators send them as earlier turns (section 2.2.2 prompts
    GPT-4 with hand-made example authors as demonstrations)."""

    task: Task
    prompt: str
    instance: Mapping[str, str]
    categories: tuple[Category, ...] = ()
    counts: tuple[int, ...] = ()
    item: Mapping[str, str] = field(default_factory=dict)
    demonstrations: tuple[tuple[str, str], ...] = ()

    def messages(self) -> list[dict[str, str]]:
        """The chat turns to send: the demonstrations' (if any), then the prompt."""
        turns = []
        for prompt, answer in self.demonstrations:
            turns += [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        return [*turns, {"role": "user", "content": self.prompt}]

    @property
    def cache_text(self) -> str:
        """What the generator's answer depends on: the prompt, and the demonstrations."""
        return "\x00".join((*(text for turn in self.demonstrations for text in turn), self.prompt))


def _to_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")


@dataclass(frozen=True)
class GeneratorContext:
    """What ``GeneratorInfo.create`` receives: the build's seed, a folder the generator
    may keep files in (converted weights), where to log (the build's log), and what the
    command line granted beyond the spec (``--allow-key-env``, ``--trust-remote-code``)."""

    seed: int
    cache_dir: Path
    log: Callable[[str], None] = _to_stderr
    granted: Granted = field(default_factory=Granted)


class Generator(Protocol):
    """Turns prompts into text. ``generate`` yields ``(index, text)`` for every request,
    in any order, as each completes (the pipeline caches each at once); an empty text is
    dropped and counted, not an error. A generator that cannot work at all (an
    unreachable endpoint, a refused key) raises :class:`InputError` with one line.
    ``parallel`` is how many requests it usefully takes at once; ``settings`` what
    changes its output (the cache key and the datacard; never a secret)."""

    parallel: int

    @property
    def settings(self) -> Mapping[str, object]: ...

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, str]]: ...
