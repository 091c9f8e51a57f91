"""Method ``simnpo``: simple NPO (Fan et al. 2024, beyond the paper), reference-free and
length-normalised.

L = forget_weight * -(2/beta) * mean over forget examples of log sigmoid(-(beta/|y|) *
log pi_theta(y|x) - gamma) + retain_weight * CE(retain), with |y| the number of answer
tokens. Defaults follow open-unlearning (the reference for methods beyond the paper;
``configs/trainer/SimNPO.yaml``): beta 4.5, the NPO coefficient (its ``gamma``) 0.125,
retain weight (its ``alpha``) 1 with the retain NLL on a paired retain batch, and margin 0
(its ``delta``; open-unlearning subtracts delta inside beta's product, so its delta is
this gamma / beta). ``retain_weight: 0`` drops the retain term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from knowundo_bench.api import (
    MethodInfo,
    MethodRun,
    QAPair,
    RetainSet,
    TrainingParams,
    TrainingReport,
    UnlearnContext,
    answer_log_likelihood,
    answer_loss,
    hookimpl,
)


class SimNPOParams(TrainingParams):
    beta: float = Field(4.5, gt=0, description="inverse temperature (open-unlearning: 4.5)")
    gamma: float = Field(0.0, ge=0, description="reward margin (open-unlearning's delta x beta: 0)")
    forget_weight: float = Field(0.125, gt=0, description="weight of the SimNPO term (open-unlearning's npo_coeff)")
    retain_weight: float = Field(1.0, ge=0, description="weight of the retain cross-entropy (0: none)")


def simnpo_loss(log_likelihood: torch.Tensor, lengths: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    return -(2.0 / beta) * F.logsigmoid(-(beta / lengths.clamp(min=1)) * log_likelihood - gamma).mean()


@hookimpl
def register_methods() -> list[MethodInfo]:
    return [
        MethodInfo(
            name="simnpo", description="Reference-free, length-normalised NPO (beta, gamma).", params=SimNPOParams
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
        log_likelihood, lengths = answer_log_likelihood(model, batch["forget"])
        loss = p.forget_weight * simnpo_loss(log_likelihood, lengths, p.beta, p.gamma)
        return loss + p.retain_weight * answer_loss(model, batch["retain"]) if p.retain_weight > 0 else loss

    return context.train(
        model, objective=objective, params=p, forget=forget, retain=retain if p.retain_weight > 0 else None
    )
