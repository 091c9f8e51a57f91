"""Method ``ga_gd``: gradient ascent on forget + gradient descent on retain (section 3.2).

Loss = forget_weight * CE(forget batch) + retain_weight * CE(retain batch), with
in-distribution retain data (the Retention Scope's train split); defaults -1 / +1.
Each forget batch is paired with a retain batch of the same size, drawn cyclically.
"""

from __future__ import annotations

from pydantic import Field

from knowundo_bench.harness.hookspecs import hookimpl
from knowundo_bench.harness.registry import MethodInfo
from knowundo_bench.harness.training import TrainingParams, answer_loss


class GAGDParams(TrainingParams):
    forget_weight: float = Field(-1.0, description="weight of the forget cross-entropy (negative: ascent)")
    retain_weight: float = Field(1.0, description="weight of the retain cross-entropy")


def weighted_objective(forget_weight: float, retain_weight: float):
    """forget_weight * CE(forget) + retain_weight * CE(retain)."""

    def objective(model, batch):
        return forget_weight * answer_loss(model, batch["forget"]) + retain_weight * answer_loss(model, batch["retain"])

    return objective


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
def unlearn(method, model, forget, retain, context):
    p = method.params
    return context.train(
        model, objective=weighted_objective(p.forget_weight, p.retain_weight), params=p, forget=forget, retain=retain
    )
