"""Method ``ga_kl``: gradient ascent on forget + KL divergence on retain (section 3.2).

Loss = forget_weight * CE(forget examples) + kl_weight * KL(P_vanilla || P_theta) on the
retain examples, where P_vanilla comes from a frozen copy of the model taken when
unlearning starts (the vanilla model). As the official ``compute_kl`` and
open-unlearning: forward KL (reference first), summed over the vocabulary and averaged
over every position of the retain examples, prompt included (``kl_positions: all``);
padding is left out (the official mean includes the padding up to 256 tokens, which only
rescales the term by the padded length). ``kl_positions: answer`` averages over the
answer tokens only. Computed in float32; batched as ``retain_batching`` says; in a mixed
micro-batch the forget term (token-mean CE over its forget rows) and the KL term are
added without shares, as officially. The frozen
copy costs one more model in memory.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from knowundo_bench.api import (
    IGNORE_INDEX,
    ForgetRetainParams,
    MethodInfo,
    MethodRun,
    QAPair,
    RetainSet,
    TrainingReport,
    UnlearnContext,
    answer_loss,
    hookimpl,
    scope_terms,
)


class GAKLParams(ForgetRetainParams):
    forget_weight: float = Field(-1.0, description="weight of the forget cross-entropy (negative: ascent)")
    kl_weight: float = Field(1.0, ge=0, description="weight of KL(vanilla || current) on retain data")
    kl_positions: Literal["all", "answer"] = Field(
        "all", description="all: every non-padding position (official); answer: answer tokens only"
    )


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` that never trains: eval mode, no gradients."""
    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference


def kl_mask(batch: dict[str, torch.Tensor], positions: str) -> torch.Tensor:
    """Which positions' next-token distributions the KL averages over: every real
    (non-padding) position, or those that predict an answer token."""
    if positions == "all":
        return batch["attention_mask"].bool()
    mask = torch.zeros_like(batch["labels"], dtype=torch.bool)
    mask[:, :-1] = batch["labels"][:, 1:] != IGNORE_INDEX
    return mask


def retain_kl(model, reference, batch: dict[str, torch.Tensor], positions: str = "all") -> torch.Tensor:
    """KL(P_reference || P_model) per selected position, averaged over those positions."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    mask = kl_mask(batch, positions)
    log_p = torch.log_softmax(model(**inputs).logits.float(), dim=-1)[mask]
    with torch.no_grad():
        log_ref = torch.log_softmax(reference(**inputs).logits.float(), dim=-1)[mask]
    return F.kl_div(log_p, log_ref, log_target=True, reduction="batchmean")


def ga_kl_objective(reference, forget_weight: float, kl_weight: float, positions: str = "all"):
    """The official ``AscentPlusKLDivergenceTrainer.compute_loss``: the forget rows'
    token-mean cross-entropy and the retain rows' KL, each weighted, added as they are
    (no shares of the micro-batch, unlike GA+GD)."""

    def objective(model, batch):
        return scope_terms(
            batch,
            by_share=False,
            forget=lambda part: forget_weight * answer_loss(model, part),
            retain=lambda part: kl_weight * retain_kl(model, reference, part, positions),
        )

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
def unlearn(
    method: MethodRun,
    model: torch.nn.Module,
    forget: list[QAPair],
    retain: RetainSet,
    context: UnlearnContext,
) -> TrainingReport:
    p = method.params
    objective = ga_kl_objective(frozen_copy(model), p.forget_weight, p.kl_weight, p.kl_positions)
    return context.train(model, objective=objective, params=p, forget=forget, retain=retain)
