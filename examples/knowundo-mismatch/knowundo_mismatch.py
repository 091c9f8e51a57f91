"""Method ``ga_mismatch``: gradient ascent with random mismatch (Yao et al. 2023,
"Large Language Model Unlearning"), the "GA with Mismatch" the KnowUnDo paper cites.

Loss = -CE(forget batch) + mismatch_weight * CE(forget questions answered with randomly
drawn retain answers): besides pushing the forgotten answers down, the model learns to
answer forgotten questions with unrelated text instead of with gibberish.
"""

from __future__ import annotations

import random

import torch
from pydantic import Field

from knowundo_bench.api import (
    Batch,
    MethodInfo,
    MethodRun,
    QAPair,
    RetainSet,
    TrainingParams,
    TrainingReport,
    UnlearnContext,
    answer_loss,
    hookimpl,
)


class MismatchParams(TrainingParams):
    mismatch_weight: float = Field(1.0, ge=0, description="weight of the mismatched-answer cross-entropy")


@hookimpl
def register_methods() -> list[MethodInfo]:
    return [
        MethodInfo(
            name="ga_mismatch",
            description="Gradient ascent + forget questions with random retain answers.",
            params=MismatchParams,
        )
    ]


@hookimpl
def unlearn(
    method: MethodRun, model: torch.nn.Module, forget: list[QAPair], retain: RetainSet, context: UnlearnContext
) -> TrainingReport:
    rng = random.Random(method.seed)
    answers = [pair.answer for pair in retain if isinstance(pair, QAPair)]
    mismatched = [pair.model_copy(update={"answer": rng.choice(answers)}) for pair in forget]
    weight = method.params.mismatch_weight

    def objective(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        return -answer_loss(model, batch["forget"]) + weight * answer_loss(model, batch["retain"])

    # Each forget batch is paired with a "retain" batch drawn from the mismatched pairs.
    return context.train(model, objective=objective, params=method.params, forget=forget, retain=mismatched)
