"""Answer relabelling shared by methods and localizers that train on substituted labels
(fine-tuning with random labels; MemFlex's random-label gradients)."""

from __future__ import annotations

from dataclasses import replace

import torch

from knowundo_bench.harness.encoding import IGNORE_INDEX, Encoded
from knowundo_bench.harness.training import answer_loss


def allowed_tokens(tokenizer) -> torch.Tensor:
    """Ids a random label may take: the whole vocabulary except special tokens."""
    special = set(tokenizer.all_special_ids)
    return torch.tensor([i for i in range(len(tokenizer)) if i not in special])


def random_answer_labels(batch: dict[str, torch.Tensor], allowed: torch.Tensor, generator: torch.Generator
                         ) -> dict[str, torch.Tensor]:
    """Replace every answer token (in inputs and labels alike) by a uniformly random
    allowed token; prompt tokens, padding and lengths are unchanged."""
    answer = batch["labels"] != IGNORE_INDEX
    choice = torch.randint(0, len(allowed), batch["labels"].shape, generator=generator)
    random_ids = allowed[choice]
    input_ids = torch.where(answer, random_ids, batch["input_ids"])
    labels = torch.where(answer, random_ids, batch["labels"])
    return {**batch, "input_ids": input_ids, "labels": labels}


def relabel(example: Encoded, answer_labels: list[int], *, replace_inputs: bool) -> Encoded:
    """``example`` with its answer tokens' labels replaced (and its inputs too, when the
    new labels should also be what the model reads: teacher forcing on the new answer)."""
    start = example.prompt_length
    if len(answer_labels) != len(example.input_ids) - start:
        raise ValueError("relabelling must keep the answer length")
    inputs = example.input_ids[:start] + tuple(answer_labels) if replace_inputs else example.input_ids
    return replace(example, input_ids=inputs, labels=example.labels[:start] + tuple(answer_labels))


def relabelled_cross_entropy(model, batch) -> torch.Tensor:
    """The objective of methods that relabel the forget set and then fine-tune on it."""
    return answer_loss(model, batch["forget"])
