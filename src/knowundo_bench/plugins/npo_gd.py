"""Method ``npo_gd``: NPO on forget + cross-entropy on retain (Zhang et al. 2024's
NPO+RT): L = L_NPO(forget) + retain_weight * CE(retain), in-distribution retain data."""

from __future__ import annotations

from pydantic import Field

from knowundo_bench.harness.hookspecs import hookimpl
from knowundo_bench.harness.registry import MethodInfo
from knowundo_bench.harness.training import answer_loss
from knowundo_bench.plugins.npo import (
    NPOParams,
    forget_npo_loss,
    with_reference_likelihood,
)


class NPOGDParams(NPOParams):
    retain_weight: float = Field(1.0, ge=0, description="weight of the retain cross-entropy")


@hookimpl
def register_methods() -> list[MethodInfo]:
    return [MethodInfo(name="npo_gd", description="NPO on forget + gradient descent on in-distribution retain data.",
                       params=NPOGDParams)]


@hookimpl
def unlearn(method, model, forget, retain, context):
    p = method.params

    def objective(model, batch):
        return forget_npo_loss(model, batch["forget"], p.beta) + p.retain_weight * answer_loss(model, batch["retain"])

    examples = with_reference_likelihood(model, context.encoder, context.encode(forget), context)
    return context.train(model, objective=objective, params=p, forget=examples, retain=retain)
