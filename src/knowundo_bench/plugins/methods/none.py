"""Method ``none``: no unlearning; the vanilla model as it is.

With a ``guard`` it is the paper's Finding 3 setting (a classifier in front of the
vanilla model); alone, a row equal to the vanilla model's.
"""

from __future__ import annotations

import torch

from knowundo_bench.api import MethodInfo, MethodRun, Params, TrainingReport, hookimpl


class NoneParams(Params):
    """No parameters: nothing trains."""


@hookimpl
def register_methods() -> list[MethodInfo]:
    return [
        MethodInfo(
            name="none", description="No unlearning (the vanilla model; pair it with a guard).", params=NoneParams
        )
    ]


@hookimpl
def unlearn(method: MethodRun, model: torch.nn.Module) -> TrainingReport:
    return TrainingReport(model_parameters=sum(p.numel() for p in model.parameters()))
