"""Method ``random_labels``: fine-tuning with random labels (section 3.2).

The official "completely random" labels (``llm_tokenize_with_chunk.py``): the model
reads the real text, and the *target* at every position whose input token is not a
special token (prompt included) is a uniformly random token; special tokens and padding
are not trained on. The targets are drawn once per example (seeded), as the official
code draws them once at tokenisation, and the model is fine-tuned on them with ordinary
cross-entropy; Eq. 6's retention term is dropped. ``random_targets: answer`` restricts
the random targets to the answer positions.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import torch
from pydantic import Field

from knowundo_bench.api import (
    IGNORE_INDEX,
    Encoded,
    MethodInfo,
    MethodRun,
    QAPair,
    TrainingParams,
    TrainingReport,
    UnlearnContext,
    allowed_tokens,
    hookimpl,
    relabelled_cross_entropy,
)


class RandomLabelsParams(TrainingParams):
    """Table 7: 2 epochs, batch 1, 16 accumulation steps, lr 5e-5, no weight decay."""

    random_targets: Literal["all", "answer"] = Field(
        "all", description="all: every non-special position (official); answer: answer positions only"
    )


def randomly_labelled(
    examples: list[Encoded], allowed: torch.Tensor, special: set[int], seed: int, targets: str = "all"
) -> list[Encoded]:
    """``examples`` with random targets (inputs unchanged): at every non-special input
    position (``all``) or at the answer positions (``answer``); elsewhere no target."""
    generator = torch.Generator().manual_seed(seed)
    result = []
    for example in examples:
        draws = allowed[torch.randint(0, len(allowed), (len(example.input_ids),), generator=generator)].tolist()
        if targets == "all":
            keep = [token not in special for token in example.input_ids]
        else:
            keep = [label != IGNORE_INDEX for label in example.labels]
        labels = tuple(draw if k else IGNORE_INDEX for draw, k in zip(draws, keep, strict=True))
        result.append(replace(example, labels=labels))
    return result


@hookimpl
def register_methods() -> list[MethodInfo]:
    return [
        MethodInfo(
            name="random_labels",
            description="Fine-tuning on the forget set with random target tokens.",
            params=RandomLabelsParams,
        )
    ]


@hookimpl
def unlearn(method: MethodRun, model: torch.nn.Module, forget: list[QAPair], context: UnlearnContext) -> TrainingReport:
    tokenizer = context.encoder.tokenizer
    examples = randomly_labelled(
        context.encode(forget),
        allowed_tokens(tokenizer),
        set(tokenizer.all_special_ids),
        method.seed,
        method.params.random_targets,
    )
    return context.train(model, objective=relabelled_cross_entropy, params=method.params, forget=examples)
