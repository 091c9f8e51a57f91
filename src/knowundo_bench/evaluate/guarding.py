"""Guards: request filters in front of a model (the paper's Finding 3 baseline).

A guard is fitted on the Unlearn and Retention Scopes' train splits (or configured) and,
at evaluation, decides for each request whether the model answers it or refuses; the
model's weights are untouched. A guard composes with any method (``guard:`` beside
``name: memflex``) or none (``name: none``: the vanilla model behind the filter).

Evaluation scores a guarded model as a user meets it: a refused request produces none
of its answer tokens, so it counts as forgotten in the teacher-forced success metrics
(accuracy 0), its ROUGE-L is the refusal text's, and perplexity is over the answered
requests only, with the refusal rate beside it. A prompt prefix (Finding 2) is part of
the request, so the guard sees it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch

from knowundo_bench.benchmark.encoding import Encoded, PromptEncoder
from knowundo_bench.benchmark.pairs import QAPair

REFUSAL = "I'm sorry, but I can't help with that request."


@dataclass(frozen=True)
class GuardRequest:
    """One request as the model would read it: its prompt text (any system prompt
    included) and the prompt's token ids."""

    text: str
    input_ids: tuple[int, ...]


@runtime_checkable
class Guard(Protocol):
    """A fitted guard: which requests it refuses, and the text a refused request gets."""

    refusal: str

    def refuses(self, requests: Sequence[GuardRequest]) -> list[bool]: ...


@dataclass
class GuardContext:
    """What a guard's ``fit`` receives: the vanilla model (the guard must not change it;
    a guard that reads its hidden states keeps its own frozen copy), the encoder, the
    train splits of both scopes, the seed, and details worth recording."""

    model: torch.nn.Module
    encoder: PromptEncoder
    forget: list[QAPair]
    retain: list[QAPair]
    seed: int
    details: dict[str, object] = field(default_factory=dict)

    def requests(self, pairs: Sequence[QAPair]) -> list[GuardRequest]:
        """``pairs`` as requests, encoded as evaluation encodes them (no prefix)."""
        return requests_of(self.encoder, self.encoder.encode_all(pairs, with_eos=False))


def requests_of(encoder: PromptEncoder, examples: Sequence[Encoded]) -> list[GuardRequest]:
    tokenizer = encoder.tokenizer
    requests = []
    for example in examples:
        prompt = tuple(example.input_ids[: example.prompt_length])
        requests.append(GuardRequest(tokenizer.decode(list(prompt), skip_special_tokens=True), prompt))
    return requests


def check_decisions(decisions: Sequence[bool], requests: Sequence[GuardRequest], name: str) -> list[bool]:
    """A guard's answer, checked: one bool per request."""
    decisions = list(decisions)
    if len(decisions) != len(requests) or not all(isinstance(d, bool) for d in decisions):
        raise RuntimeError(f"guard {name!r} must return one bool per request ({len(requests)}), got {decisions[:3]}")
    return decisions
