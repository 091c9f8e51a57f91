"""Method ``adversarial``: unlearning with adversarial samples (section 3.2, eq. 7).

Each answer token's label becomes a_i = argmax_{a != y_i} P_theta(a | y_<i, x): the
vanilla model's most likely token other than the gold one, given the gold prefix.
Labels are computed once, from the model as it is when unlearning starts (the vanilla
model), and the model is then fine-tuned on them with cross-entropy. Readings: the
inputs keep the gold prefix y_<i (eq. 7 conditions on it); the candidate set is the
whole vocabulary, as the equation states (special tokens included).
"""

from __future__ import annotations

import torch

from knowundo_bench.api import (
    IGNORE_INDEX,
    Encoded,
    MethodInfo,
    MethodRun,
    QAPair,
    TrainingParams,
    TrainingReport,
    UnlearnContext,
    batched,
    device_batches,
    hookimpl,
    model_device,
    relabel,
    relabelled_cross_entropy,
    train_mode,
)

LABEL_BATCH = 16


class AdversarialParams(TrainingParams):
    """Table 7: 2 epochs, batch 1, 16 accumulation steps, lr 5e-5, no weight decay."""


@torch.no_grad()
def adversarial_labels(model, encoder, examples: list[Encoded], reporter) -> list[Encoded]:
    """Eq. 7 for every answer token of ``examples``, from one forward pass of ``model``."""
    result: list[Encoded] = []
    with train_mode(model, False):
        for chunk, batch in device_batches(encoder, examples, LABEL_BATCH, model_device(model)):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
            gold = batch["labels"][:, 1:]
            logits.scatter_(-1, gold.clamp(min=0).unsqueeze(-1), float("-inf"))  # exclude a = y_i
            best_other = logits.argmax(dim=-1)
            for row, example in enumerate(chunk):
                positions = (gold[row] != IGNORE_INDEX).nonzero().flatten()
                result.append(relabel(example, best_other[row, positions].tolist()))
            reporter.advance(1)
    return result


@hookimpl
def register_methods() -> list[MethodInfo]:
    return [
        MethodInfo(
            name="adversarial",
            description="Fine-tuning on the vanilla model's best wrong token (eq. 7).",
            params=AdversarialParams,
        )
    ]


@hookimpl
def unlearn(method: MethodRun, model: torch.nn.Module, forget: list[QAPair], context: UnlearnContext) -> TrainingReport:
    examples = context.encode(forget)
    with context.progress(f"adversarial labels {context.label}", len(batched(examples, LABEL_BATCH))) as reporter:
        examples = adversarial_labels(model, context.encoder, examples, reporter)
    return context.train(model, objective=relabelled_cross_entropy, params=method.params, forget=examples)
