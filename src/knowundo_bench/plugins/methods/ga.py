"""Method ``ga``: gradient ascent on the forget set (paper section 3.2).

Eq. 6 without its retention term, with the gradient's direction reversed: minimise
the negative answer-token cross-entropy of the Unlearn Scope's train split.
"""

from __future__ import annotations

import torch

from knowundo_bench.api import (
    MethodInfo,
    MethodRun,
    QAPair,
    TrainingParams,
    TrainingReport,
    UnlearnContext,
    WeightedNLL,
    hookimpl,
)


class GAParams(TrainingParams):
    """Table 7: 2 epochs, batch 1, 16 accumulation steps, lr 5e-5, no weight decay."""


gradient_ascent = WeightedNLL({"forget": -1.0}, per="token", by_share=False)
"""Minus the forget batch's token-mean cross-entropy (the model's own ``loss``)."""


@hookimpl
def register_methods() -> list[MethodInfo]:
    return [MethodInfo(name="ga", description="Gradient ascent on the forget set.", params=GAParams)]


@hookimpl
def unlearn(method: MethodRun, model: torch.nn.Module, forget: list[QAPair], context: UnlearnContext) -> TrainingReport:
    return context.train(model, objective=gradient_ascent, params=method.params, forget=forget)
