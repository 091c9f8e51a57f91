"""Losses methods build their objectives from (token cross-entropy, per-example means,
the forget/retain terms of a mixed micro-batch)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from knowundo_bench.benchmark.encoding import IGNORE_INDEX
from knowundo_bench.evaluate.metrics import example_nll_sums
from knowundo_bench.train.hook_types import Batch


def answer_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens of a batch."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss


def example_losses(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per example: the mean cross-entropy over its labelled tokens (the official
    ``AscentPlusDescentTrainer.compute_loss`` before the factors)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    sums, counts = example_nll_sums(logits, batch["labels"])
    return sums / counts.clamp(min=1)  # an example truncated to no answer tokens adds 0


def example_mean_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The mean over examples of each example's mean token cross-entropy."""
    return example_losses(model, batch).mean()


def share(part: dict[str, torch.Tensor]) -> torch.Tensor | float:
    """The fraction of the micro-batch's examples in this part (1 when batches are paired)."""
    return part.get("share", 1.0)


def scope_terms(
    batch: Batch, *, by_share: bool = True, **terms: Callable[[dict[str, torch.Tensor]], torch.Tensor]
) -> torch.Tensor:
    """Sum over the parts present in ``batch`` (``forget=``, ``retain=``) of the part's
    share times its term (``by_share=False``: the terms as they are); a mixed
    micro-batch may lack either part."""
    present = [
        (share(batch[kind]) if by_share else 1.0, term(batch[kind])) for kind, term in terms.items() if kind in batch
    ]
    if not present:
        raise ValueError(f"batch has none of the parts {sorted(terms)}")
    total = present[0][0] * present[0][1]
    for weight, value in present[1:]:
        total = total + weight * value
    return total


def answer_log_likelihood(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example: the summed log-probability of its answer tokens, and their count."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE_INDEX
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    token_log_probs = log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (token_log_probs * mask).sum(dim=1), mask.sum(dim=1)


@dataclass(frozen=True)
class WeightedNLL:
    """An objective whose micro-batch loss is a weighted sum of its examples' answer-token
    NLL sums, each weight set by the example's part (``factors``: forget, retain), how
    the part averages (``per="example"``: each example's token mean, then the mean over
    the part's examples; ``per="token"``: the mean over all the part's answer tokens, as
    a model's own ``loss``) and, with ``by_share``, the part's share of the micro-batch.

    Called on a micro-batch it computes exactly what the methods computed before (the
    plain objective). Because the weights depend only on the batches' shapes, the
    trainer can also run a whole accumulation window as one stacked forward and backward
    (:meth:`stacked_terms`), which gives the same gradient as the window's micro-batches
    one by one (issue 15: the official recipe's batch 1 x 16 accumulation steps is
    sixteen tiny forwards otherwise)."""

    factors: Mapping[str, float]
    per: Literal["example", "token"] = "example"
    by_share: bool = True

    def part_loss(self, model: torch.nn.Module, part: dict[str, torch.Tensor]) -> torch.Tensor:
        return example_mean_loss(model, part) if self.per == "example" else answer_loss(model, part)

    def __call__(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        terms = {kind: self._term(model, factor) for kind, factor in self.factors.items()}
        return scope_terms(batch, by_share=self.by_share, **terms)

    def _term(self, model: torch.nn.Module, factor: float) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
        return lambda part: factor * self.part_loss(model, part)

    def example_weights(self, batch: Batch) -> list[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        """Each part of ``batch`` with the weight of each of its examples' NLL sums, so
        that the sum over parts of ``weights x sums`` is ``self(model, batch)``."""
        weighted = []
        for kind, factor in self.factors.items():
            if kind not in batch:
                continue
            part = batch[kind]
            counts = (part["labels"][:, 1:] != IGNORE_INDEX).sum(dim=1).to(torch.float32)
            scale = factor * (float(share(part)) if self.by_share else 1.0)
            if self.per == "example":
                weights = scale / (counts.clamp(min=1) * len(counts))
            else:
                weights = torch.full_like(counts, scale / max(float(counts.sum()), 1.0))
            weighted.append((part, weights))
        if not weighted:
            raise ValueError(f"batch has none of the parts {sorted(self.factors)}")
        return weighted

    def stacked_terms(self, window: Sequence[Batch], divisor: float) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Every example of the window's micro-batches in one right-padded batch, and the
        weight of each one's NLL sum in the window's loss (each micro-batch's loss divided
        by ``divisor``, as the trainer accumulates them)."""
        parts, weights = [], []
        for batch in window:
            for part, part_weights in self.example_weights(batch):
                parts.append(part)
                weights.append(part_weights / divisor)
        return stack_parts(parts), torch.cat(weights)


def stack_parts(parts: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Right-padded collated batches as one: each padded to the widest with attention 0
    and ignored labels (a causal model's real positions never see right padding)."""
    width = max(part["input_ids"].shape[1] for part in parts)
    padding = {"input_ids": 0, "attention_mask": 0, "labels": IGNORE_INDEX}
    stacked = {}
    for name, fill in padding.items():
        stacked[name] = torch.cat([F.pad(part[name], (0, width - part[name].shape[1]), value=fill) for part in parts])
    return stacked


def weighted_nll(model: torch.nn.Module, batch: dict[str, torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """Sum over the examples of ``weights`` x each example's answer-token NLL sum."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    sums, _ = example_nll_sums(logits, batch["labels"])
    return (sums * weights.to(sums.device)).sum()
