"""Attack ``relearn``: a few fine-tuning steps after unlearning (Hu et al., ICLR 2025,
"Jogging the memory of unlearned LLMs through targeted relearning"; Łucki et al. 2024:
a handful of steps restore most of what was forgotten).

``data: forget_subset`` relearns a seeded ``fraction`` of the Unlearn Scope's train
pairs (the val pairs the metrics read stay unseen: what returns there was not retaught
but revived); ``data: retention`` relearns the Retention Scope's train pairs of the same
instances (benign relearning on what users may train on). ``steps`` optimizer steps of
``batch_size`` pairs from ``lr`` (default: the vanilla fine-tuning's) down the training
loop's cosine schedule, no warm-up (the mean rate is about half of ``lr``); with
``every_n_steps`` the scope metrics are read along the way (a recovery curve).
"""

from __future__ import annotations

import math
import random
from typing import Any, Literal

import torch
from pydantic import Field

from knowundo_bench.api import AttackContext, AttackInfo, AttackOutcome, Params, QAPair, TrainingParams, hookimpl


class RelearnParams(Params):
    steps: int = Field(10, ge=1, description="optimizer steps")
    lr: float | None = Field(None, gt=0, description="default: the vanilla fine-tuning's learning rate")
    data: Literal["forget_subset", "retention"] = "forget_subset"
    fraction: float = Field(0.25, gt=0, le=1, description="forget_subset: the share of the forget train pairs")
    batch_size: int = Field(4, ge=1)
    every_n_steps: int | None = Field(None, ge=1, description="scope metrics every N steps (the recovery curve)")


def relearned_pairs(params: RelearnParams, context: AttackContext) -> list[QAPair]:
    if params.data == "retention":
        return list(context.retain)
    count = max(1, round(params.fraction * len(context.forget)))
    return random.Random(context.seed).sample(list(context.forget), count)


def apply(params: RelearnParams, model: torch.nn.Module, context: AttackContext) -> AttackOutcome:
    pairs = relearned_pairs(params, context)
    lr = params.lr or context.vanilla_lr
    epochs = math.ceil(params.steps / math.ceil(len(pairs) / params.batch_size))
    training = TrainingParams(
        epochs=epochs,
        lr=lr,
        batch_size=params.batch_size,
        grad_accum=1,
        warmup_ratio=0.0,
        max_steps=params.steps,
    )
    curve: list[dict[str, Any]] = []
    after_step = None
    if params.every_n_steps is not None and context.measure is not None:
        measure, every = context.measure, params.every_n_steps
        curve.append(measure(model, 0))

        def after_step(step: int) -> None:
            if step % every == 0 or step == params.steps:
                curve.append(measure(model, step))

    report = context.train(model, params=training, pairs=pairs, after_step=after_step)
    details: dict[str, Any] = {
        "data": params.data,
        "pairs": len(pairs),
        "steps": len(report.step_losses),
        "lr": lr,
        "losses": report.step_losses,
    }
    if curve:
        details["curve"] = curve
    return AttackOutcome(details=details, seen=tuple(pairs))


@hookimpl
def register_attacks() -> list[AttackInfo]:
    return [
        AttackInfo(
            name="relearn",
            description="Fine-tune a few steps on a subset of the forget set (or on the Retention Scope), then "
            "measure what came back.",
            params=RelearnParams,
            apply=apply,
        )
    ]
