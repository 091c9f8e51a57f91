"""Relabelling shared by methods and localizers that train on substituted targets
(random labels, adversarial samples, MemFlex's random-label gradients)."""

from __future__ import annotations

from dataclasses import replace

import torch

from knowundo_bench.benchmark.encoding import Encoded
from knowundo_bench.train.losses import WeightedNLL


def allowed_tokens(tokenizer) -> torch.Tensor:
    """Ids a random label may take: the whole vocabulary except special tokens."""
    special = set(tokenizer.all_special_ids)
    return torch.tensor([i for i in range(len(tokenizer)) if i not in special])


def relabel(example: Encoded, answer_labels: list[int]) -> Encoded:
    """``example`` with its answer tokens' labels replaced; the model still reads the
    real text."""
    start = example.prompt_length
    if len(answer_labels) != len(example.input_ids) - start:
        raise ValueError("relabelling must keep the answer length")
    return replace(example, labels=example.labels[:start] + tuple(answer_labels))


relabelled_cross_entropy = WeightedNLL({"forget": 1.0}, per="token", by_share=False)
"""The objective of methods that relabel the forget set and then fine-tune on it: the
token-mean cross-entropy of the relabelled answers."""
