"""Method ``npo``: negative preference optimisation (Zhang et al. 2024, beyond the paper).

L = -(2/beta) * mean over forget examples of log sigmoid(-beta * (log pi_theta(y|x) -
log pi_ref(y|x))), with log pi(y|x) the summed log-probability of the answer tokens and
pi_ref the model when unlearning starts (the vanilla model). The reference
log-likelihoods are computed once, before training, so no second model is kept.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from pydantic import Field

from knowundo_bench.api import (
    Encoded,
    MethodInfo,
    MethodRun,
    QAPair,
    TrainingParams,
    TrainingReport,
    UnlearnContext,
    answer_log_likelihood,
    batched,
    device_batches,
    hookimpl,
    model_device,
    train_mode,
)

REFERENCE = "reference_log_likelihood"
SCORE_BATCH = 16


class NPOParams(TrainingParams):
    beta: float = Field(0.1, gt=0, description="inverse temperature of the preference loss")


def npo_loss(log_likelihood: torch.Tensor, reference: torch.Tensor, beta: float) -> torch.Tensor:
    """-(2/beta) * mean(log sigmoid(-beta * (log pi_theta - log pi_ref)))."""
    return -(2.0 / beta) * F.logsigmoid(-beta * (log_likelihood - reference)).mean()


@torch.no_grad()
def with_reference_likelihood(model, encoder, examples: list[Encoded], context) -> list[Encoded]:
    """``examples`` carrying the current (vanilla) model's answer log-likelihood."""
    result: list[Encoded] = []
    total = len(batched(examples, SCORE_BATCH))
    with context.progress(f"reference likelihoods {context.label}", total) as reporter, train_mode(model, False):
        for chunk, batch in device_batches(encoder, examples, SCORE_BATCH, model_device(model)):
            log_likelihood, _ = answer_log_likelihood(model, batch)
            result += [
                replace(e, extras={**e.extras, REFERENCE: float(value)})
                for e, value in zip(chunk, log_likelihood.tolist(), strict=True)
            ]
            reporter.advance(1)
    return result


def forget_npo_loss(model, forget_batch: dict[str, torch.Tensor], beta: float) -> torch.Tensor:
    log_likelihood, _ = answer_log_likelihood(model, forget_batch)
    return npo_loss(log_likelihood, forget_batch[REFERENCE], beta)


@hookimpl
def register_methods() -> list[MethodInfo]:
    return [
        MethodInfo(
            name="npo", description="Negative preference optimisation on the forget set (beta).", params=NPOParams
        )
    ]


@hookimpl
def unlearn(method: MethodRun, model: torch.nn.Module, forget: list[QAPair], context: UnlearnContext) -> TrainingReport:
    beta = method.params.beta
    examples = with_reference_likelihood(model, context.encoder, context.encode(forget), context)
    return context.train(
        model, objective=lambda m, b: forget_npo_loss(m, b["forget"], beta), params=method.params, forget=examples
    )
