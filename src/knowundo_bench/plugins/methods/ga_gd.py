"""Method ``ga_gd``: gradient ascent on forget + gradient descent on retain (section 3.2).

The official ``AscentPlusDescentTrainer``: each example's loss is its mean answer-token
cross-entropy times its factor (``forget_weight`` -1, ``retain_weight`` +1 by default),
averaged over the micro-batch, with in-distribution retain data (the Retention Scope's
train split). Forget and retain examples are batched as ``retain_batching`` says
(mixed by default, as officially; see ``UnlearnContext.train``).
"""

from __future__ import annotations

import torch
from pydantic import Field

from knowundo_bench.api import (
    ForgetRetainParams,
    MethodInfo,
    MethodRun,
    QAPair,
    RetainSet,
    TrainingReport,
    UnlearnContext,
    WeightedNLL,
    hookimpl,
)


class GAGDParams(ForgetRetainParams):
    forget_weight: float = Field(-1.0, description="weight of the forget cross-entropy (negative: ascent)")
    retain_weight: float = Field(1.0, description="weight of the retain cross-entropy")


def weighted_objective(forget_weight: float, retain_weight: float):
    """Mean over the micro-batch of factor x per-example CE (factor: the scope's weight)."""

    return WeightedNLL({"forget": forget_weight, "retain": retain_weight}, per="example", by_share=True)


@hookimpl
def register_methods() -> list[MethodInfo]:
    return [
        MethodInfo(
            name="ga_gd",
            description="Gradient ascent on forget + gradient descent on in-distribution retain data.",
            params=GAGDParams,
        )
    ]


@hookimpl
def unlearn(
    method: MethodRun,
    model: torch.nn.Module,
    forget: list[QAPair],
    retain: RetainSet,
    context: UnlearnContext,
) -> TrainingReport:
    p = method.params
    return context.train(
        model, objective=weighted_objective(p.forget_weight, p.retain_weight), params=p, forget=forget, retain=retain
    )
