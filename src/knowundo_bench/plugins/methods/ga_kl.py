"""Method ``ga_kl``: gradient ascent on forget + KL divergence on retain (section 3.2).

Loss = forget_weight * CE(forget examples) + kl_weight * KL(P_vanilla || P_theta) on the
retain examples, where P_vanilla comes from a frozen copy of the model taken when
unlearning starts (the vanilla model). The paper gives no formula; the official
``compute_kl`` (``llm_unlearn/methods/ascent_plus_KLdivergence.py:55-89``) is forward KL
(reference first), summed over the vocabulary and averaged over **every** position of
the retain rows as its tokenizer pads them: to ``max_length`` (256), padding included.
Padded positions attend to the real tokens, so their terms are not zero and they steer
the gradient (docs/fidelity.md row 8): ``kl_positions: padded`` (the default) pads the
retain rows to the encoder's ``max_length`` and averages over all positions, as
officially. ``all`` averages over the real (non-padding) positions, ``answer`` over the
answer tokens only. Computed in float32; batched as ``retain_batching`` says; in a mixed
micro-batch the forget term (token-mean CE over its forget rows) and the KL term are
added without shares, as officially. The frozen copy costs one more model in memory.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
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
    kl_positions: Literal["padded", "all", "answer"] = Field(
        "padded",
        description="padded: every position of rows padded to max_length (official); "
        "all: every non-padding position; answer: answer tokens only",
    )


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` that never trains: eval mode, no gradients."""
    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference


@dataclass(frozen=True)
class KLPositions:
    """Where the KL term is averaged: ``padded`` (rows padded to ``max_length`` with
    ``pad_id``, every position counted), ``all`` (real positions) or ``answer``."""

    kind: str = "padded"
    max_length: int = 256
    pad_id: int = 0


def pad_to_length(batch: dict[str, torch.Tensor], length: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a collated batch to ``length`` as the official ``chunk_and_pad``: pad ids
    with attention 0 (labels ignored)."""
    extra = max(length - batch["input_ids"].shape[1], 0)
    return {
        "input_ids": F.pad(batch["input_ids"], (0, extra), value=pad_id),
        "attention_mask": F.pad(batch["attention_mask"], (0, extra), value=0),
        "labels": F.pad(batch["labels"], (0, extra), value=IGNORE_INDEX),
    }


def kl_mask(batch: dict[str, torch.Tensor], positions: str) -> torch.Tensor:
    """Which positions' next-token distributions the KL averages over: all of them
    (``padded``), every real position (``all``), or those that predict an answer token."""
    if positions == "padded":
        return torch.ones_like(batch["attention_mask"], dtype=torch.bool)
    if positions == "all":
        return batch["attention_mask"].bool()
    mask = torch.zeros_like(batch["labels"], dtype=torch.bool)
    mask[:, :-1] = batch["labels"][:, 1:] != IGNORE_INDEX
    return mask


def retain_kl(model, reference, batch: dict[str, torch.Tensor], positions: KLPositions | str = "all") -> torch.Tensor:
    """KL(P_reference || P_model) per selected position, averaged over those positions."""
    where = positions if isinstance(positions, KLPositions) else KLPositions(positions)
    if where.kind == "padded":
        batch = pad_to_length(batch, where.max_length, where.pad_id)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    mask = kl_mask(batch, where.kind)
    log_p = torch.log_softmax(model(**inputs).logits.float(), dim=-1)[mask]
    with torch.no_grad():
        log_ref = torch.log_softmax(reference(**inputs).logits.float(), dim=-1)[mask]
    return F.kl_div(log_p, log_ref, log_target=True, reduction="batchmean")


def ga_kl_objective(reference, forget_weight: float, kl_weight: float, positions: KLPositions | str = "all"):
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
    positions = KLPositions(p.kl_positions, context.encoder.max_length, context.encoder.tokenizer.pad_token_id)
    objective = ga_kl_objective(frozen_copy(model), p.forget_weight, p.kl_weight, positions)
    return context.train(model, objective=objective, params=p, forget=forget, retain=retain)
