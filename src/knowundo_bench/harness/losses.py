"""Losses methods build their objectives from (token cross-entropy, per-example means,
the forget/retain terms of a mixed micro-batch)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from knowundo_bench.harness.contracts import Batch
from knowundo_bench.harness.encoding import IGNORE_INDEX
from knowundo_bench.harness.metrics import example_nll_sums


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
