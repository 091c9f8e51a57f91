"""Method ``npo_gd``: NPO on forget + cross-entropy on retain (Zhang et al. 2024's
NPO+RT): L = L_NPO(forget) + retain_weight * CE(retain), in-distribution retain data,
batched as ``retain_batching`` says (mixed by default, like the paper's GA+GD)."""

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
    example_mean_loss,
    hookimpl,
    scope_terms,
)
from knowundo_bench.plugins.methods.npo import (
    NPOParams,
    forget_npo_loss,
    with_reference_likelihood,
)


class NPOGDParams(NPOParams, ForgetRetainParams):
    retain_weight: float = Field(1.0, ge=0, description="weight of the retain cross-entropy")


@hookimpl
def register_methods() -> list[MethodInfo]:
    return [
        MethodInfo(
            name="npo_gd",
            description="NPO on forget + gradient descent on in-distribution retain data.",
            params=NPOGDParams,
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

    def objective(model, batch):
        return scope_terms(
            batch,
            forget=lambda part: forget_npo_loss(model, part, p.beta),
            retain=lambda part: p.retain_weight * example_mean_loss(model, part),
        )

    examples = with_reference_likelihood(model, context.encoder, context.encode(forget), context)
    return context.train(model, objective=objective, params=p, forget=examples, retain=retain)
