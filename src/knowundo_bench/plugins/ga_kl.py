"""Method ``ga_kl``: gradient ascent on forget + KL divergence on retain (section 3.2).

Loss = forget_weight * CE(forget batch) + kl_weight * KL(P_vanilla || P_theta) on the
retain batch, where P_vanilla comes from a frozen copy of the model taken when
unlearning starts (the vanilla model). Readings: forward KL (reference first), summed
over the vocabulary and averaged over the retain batch's labelled tokens (answer
tokens of QA pairs, every token of plain text), computed in float32. The frozen copy
costs one more model in memory.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from pydantic import Field

from knowundo_bench.harness.encoding import IGNORE_INDEX
from knowundo_bench.harness.hookspecs import hookimpl
from knowundo_bench.harness.registry import MethodInfo
from knowundo_bench.harness.training import TrainingParams, answer_loss


class GAKLParams(TrainingParams):
    forget_weight: float = Field(-1.0, description="weight of the forget cross-entropy (negative: ascent)")
    kl_weight: float = Field(1.0, ge=0, description="weight of KL(vanilla || current) on retain data")


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` that never trains: eval mode, no gradients."""
    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference


def retain_kl(model, reference, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """KL(P_reference || P_model) per labelled token, averaged over those tokens."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    mask = batch["labels"][:, 1:] != IGNORE_INDEX
    log_p = torch.log_softmax(model(**inputs).logits[:, :-1].float(), dim=-1)[mask]
    with torch.no_grad():
        log_ref = torch.log_softmax(reference(**inputs).logits[:, :-1].float(), dim=-1)[mask]
    return F.kl_div(log_p, log_ref, log_target=True, reduction="batchmean")


def ga_kl_objective(reference, forget_weight: float, kl_weight: float):
    def objective(model, batch):
        return forget_weight * answer_loss(model, batch["forget"]) + kl_weight * retain_kl(model, reference, batch["retain"])

    return objective


@hookimpl
def register_methods() -> list[MethodInfo]:
    return [
        MethodInfo(
            name="ga_kl",
            description="Gradient ascent on forget + KL to the frozen vanilla model on in-distribution retain data.",
            params=GAKLParams,
        )
    ]


@hookimpl
def unlearn(method, model, forget, retain, context):
    p = method.params
    objective = ga_kl_objective(frozen_copy(model), p.forget_weight, p.kl_weight)
    return context.train(model, objective=objective, params=p, forget=forget, retain=retain)
