"""Method ``random_labels``: fine-tuning with random labels (section 3.2).

Each forget answer is replaced by uniformly random non-special tokens of the same length
(the official code's "completely random") and the model is fine-tuned on these pairs with
ordinary cross-entropy; Eq. 6's retention term is dropped. Reading chosen: the random
answer is drawn once per example (seeded), so the method fine-tunes on one fixed randomly
labelled set, and the random tokens are also what the model reads (teacher forcing on
the new answer), as when a dataset's answers are replaced.
"""

from __future__ import annotations

import torch

from knowundo_bench.harness.encoding import Encoded
from knowundo_bench.harness.hookspecs import hookimpl
from knowundo_bench.harness.labels import (
    allowed_tokens,
    relabel,
    relabelled_cross_entropy,
)
from knowundo_bench.harness.registry import MethodInfo
from knowundo_bench.harness.training import TrainingParams


class RandomLabelsParams(TrainingParams):
    """Table 7: 2 epochs, batch 1, 16 accumulation steps, lr 5e-5, no weight decay."""


def randomly_labelled(examples: list[Encoded], allowed: torch.Tensor, seed: int) -> list[Encoded]:
    """Every answer token (labels and inputs) replaced by a uniformly random allowed token."""
    generator = torch.Generator().manual_seed(seed)
    result = []
    for example in examples:
        length = len(example.input_ids) - example.prompt_length
        choice = torch.randint(0, len(allowed), (length,), generator=generator)
        result.append(relabel(example, allowed[choice].tolist(), replace_inputs=True))
    return result


@hookimpl
def register_methods() -> list[MethodInfo]:
    return [MethodInfo(name="random_labels", description="Fine-tuning on the forget set with random answer tokens.",
                       params=RandomLabelsParams)]


@hookimpl
def unlearn(method, model, forget, context):
    examples = randomly_labelled(context.encode(forget), allowed_tokens(context.encoder.tokenizer), method.seed)
    return context.train(model, objective=relabelled_cross_entropy, params=method.params, forget=examples)
