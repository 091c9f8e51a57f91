"""Localizer ``memflex_fast`` (beyond the paper): MemFlex's test (eq. 8-9) on gradients
whose random substitution touches only the *targets*; the model reads the real text.

Then every pass sees the same logits, and the mean over N label draws of the gradient
of the cross-entropy is the gradient of the mean over the N label sets of the
cross-entropy on one set of logits: one forward and one backward per batch instead of
N. The draws are the faithful localizer's (floor(n/2) answer positions with
replacement). Whether its selection agrees with ``memflex`` is measured by
``make bench`` (``localize_fast_agreement``); it is an option, not the default.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from knowundo_bench.api import (
    IGNORE_INDEX,
    NO_PROGRESS,
    Encoded,
    Localization,
    LocalizerInfo,
    LocalizerRun,
    QAPair,
    RetainSet,
    UnlearnContext,
    hookimpl,
)
from knowundo_bench.plugins.localizers.memflex import (
    MemFlexLocalizerParams,
    accumulate,
    random_targets,
    scope_gradients,
    selectable_tensors,
    tensor_localization,
)


def fast_average_gradients(
    model,
    encoder,
    examples: Sequence[Encoded],
    names: Sequence[str],
    p: MemFlexLocalizerParams,
    allowed: torch.Tensor,
    generator: torch.Generator,
    reporter=NO_PROGRESS,
) -> dict[str, torch.Tensor]:
    """Mean over examples and label draws of the gradient of each draw's mean token CE,
    with one forward and one backward per batch of examples."""
    eos = encoder.tokenizer.eos_token_id
    draws = [[random_targets(e, allowed, eos, generator) for e in examples] for _ in range(p.n_passes)]
    device = next(model.parameters()).device
    model.zero_grad(set_to_none=True)
    size = p.batch_size
    for start in range(0, len(examples), size):
        chunk = examples[start : start + size]
        batch = {k: v.to(device) for k, v in encoder.collate(chunk).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        total = log_probs.new_zeros(())
        for draw in draws:
            labels = encoder.collate(draw[start : start + size])["labels"][:, 1:].to(device)
            mask = labels != IGNORE_INDEX
            nll = -log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
            total = total + (nll.sum(dim=1) / mask.sum(dim=1).clamp(min=1)).sum()
        (total / (len(examples) * p.n_passes)).backward()
        reporter.advance(p.n_passes * len(chunk))
    gradients = accumulate(model, names)
    model.zero_grad(set_to_none=True)
    return gradients


@hookimpl
def register_localizers() -> list[LocalizerInfo]:
    return [
        LocalizerInfo(
            name="memflex_fast",
            description="MemFlex's test on random-target gradients: one forward/backward instead of N.",
            params=MemFlexLocalizerParams,
        )
    ]


@hookimpl
def localize(
    localizer: LocalizerRun,
    model: torch.nn.Module,
    forget: list[QAPair],
    retain: RetainSet,
    context: UnlearnContext,
) -> Localization:
    selectable = selectable_tensors(localizer.params, model, context)
    g_ul, g_rt = scope_gradients(localizer, model, forget, retain, context, fast_average_gradients, selectable)
    return tensor_localization(localizer.params, model, context, g_ul, g_rt)
