"""Localizer ``memflex`` (section 3.3, eq. 8-9, table 12).

For every trainable tensor, average its gradient over ``n_passes`` passes (N=5 in the
paper) of the forget set with randomly substituted answer labels (G_UL), and likewise
on the retain set (G_RT). Select the tensors whose gradient directions diverge,
cos(G_UL, G_RT) < mu, and whose unlearning gradient is large, mean|G_UL| > sigma.

Readings chosen where the paper is terse:
* "the label is substituted with a random one": every answer token is replaced by a
  uniformly random non-special token (prompt tokens and length unchanged), fresh each
  pass, seeded.
* The magnitude is the mean absolute entry of G_UL (eq. 9's |G_UL| averaged over the
  tensor's n entries; the paper's formula prints G_RT inside, a typo).
* A tensor whose G_UL or G_RT is all zeros (a fresh LoRA ``lora_A``) gets cosine 0.0,
  not NaN; with magnitude 0 it is never selected.
* ``sigma_percentile`` (0-100) sets sigma to that percentile of all tensors'
  magnitudes, since absolute magnitudes depend on model scale; give ``sigma`` or it.
"""

from __future__ import annotations

import numpy
import torch
from pydantic import Field, model_validator

from knowundo_bench.harness.encoding import batched
from knowundo_bench.harness.hookspecs import hookimpl
from knowundo_bench.harness.labels import allowed_tokens, random_answer_labels
from knowundo_bench.harness.models import train_mode
from knowundo_bench.harness.progress import NO_PROGRESS
from knowundo_bench.harness.registry import LocalizerInfo, Params
from knowundo_bench.harness.training import Localization, answer_loss


class MemFlexLocalizerParams(Params):
    mu: float = Field(0.96, ge=-1, le=2, description="cosine threshold (Table 12: privacy/LLaMA 0.96); >1 disables it")
    sigma: float | None = Field(None, ge=0, description="absolute magnitude threshold (Table 12: 4e-4)")
    sigma_percentile: float | None = Field(None, ge=0, le=100, description="sigma as a percentile of magnitudes")
    n_passes: int = Field(5, ge=1)
    batch_size: int = Field(16, ge=1)

    @model_validator(mode="after")
    def _one_sigma(self) -> MemFlexLocalizerParams:
        if self.sigma is not None and self.sigma_percentile is not None:
            raise ValueError("give either sigma or sigma_percentile, not both")
        if self.sigma is None and self.sigma_percentile is None:
            self.sigma = 4e-4
        return self


def average_gradients(model, batches, names, n_passes, allowed, generator, reporter=NO_PROGRESS
                      ) -> dict[str, torch.Tensor]:
    """Mean over passes of the gradient of the random-label loss over all ``batches``."""
    params = dict(model.named_parameters())
    totals = {n: torch.zeros_like(params[n], dtype=torch.float32) for n in names}
    device = next(model.parameters()).device
    for _ in range(n_passes):
        model.zero_grad(set_to_none=True)
        for batch in batches:
            batch = {k: v.to(device) for k, v in random_answer_labels(batch, allowed, generator).items()}
            (answer_loss(model, batch) / len(batches)).backward()
            reporter.advance(1)
        for n in names:
            if params[n].grad is not None:
                totals[n] += params[n].grad.float()
    model.zero_grad(set_to_none=True)
    return {n: t / n_passes for n, t in totals.items()}


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of flattened tensors; 0.0 when either is all zeros."""
    a, b = a.flatten().double(), b.flatten().double()
    norms = a.norm() * b.norm()
    return float(a @ b / norms) if norms > 0 else 0.0


def select(stats: dict[str, dict[str, float]], mu: float, sigma: float) -> list[str]:
    """Eq. 9: tensors with cos < mu and magnitude > sigma."""
    return [n for n, s in stats.items() if s["cos"] < mu and s["magnitude"] > sigma]


@hookimpl
def register_localizers() -> list[LocalizerInfo]:
    return [
        LocalizerInfo(
            name="memflex",
            description="Tensors with cos(G_UL, G_RT) < mu and mean|G_UL| > sigma (random-label gradients).",
            params=MemFlexLocalizerParams,
        )
    ]


def scope_gradients(localizer, model, forget, retain, context) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """G_UL and G_RT (eq. 8's inputs) for every trainable tensor; the model is unchanged."""
    p = localizer.params
    encoder = context.encoder
    names = [n for n, param in model.named_parameters() if param.requires_grad]
    generator = torch.Generator().manual_seed(localizer.seed)
    allowed = allowed_tokens(encoder.tokenizer)
    forget_batches = [encoder.collate(c) for c in batched(context.encode(forget), p.batch_size)]
    retain_batches = [encoder.collate(c) for c in batched(context.encode(retain), p.batch_size)]
    total = p.n_passes * (len(forget_batches) + len(retain_batches))
    with context.progress(f"localize {context.label}", total) as reporter, train_mode(model, True):
        g_ul = average_gradients(model, forget_batches, names, p.n_passes, allowed, generator, reporter)
        g_rt = average_gradients(model, retain_batches, names, p.n_passes, allowed, generator, reporter)
    return g_ul, g_rt


def sigma_for(p: MemFlexLocalizerParams, magnitudes: list[float] | torch.Tensor) -> float:
    """The absolute sigma, or the requested percentile of the magnitudes."""
    if p.sigma_percentile is None:
        return float(p.sigma)
    values = torch.as_tensor(magnitudes, dtype=torch.float64).flatten().numpy()
    return float(numpy.percentile(values, p.sigma_percentile))


@hookimpl
def localize(localizer, model, forget, retain, context) -> Localization:
    p: MemFlexLocalizerParams = localizer.params
    g_ul, g_rt = scope_gradients(localizer, model, forget, retain, context)
    stats = {n: {"cos": cosine(g_ul[n], g_rt[n]), "magnitude": float(g_ul[n].abs().mean())} for n in g_ul}
    sigma = sigma_for(p, [s["magnitude"] for s in stats.values()])
    selected = select(stats, p.mu, sigma)
    if not selected:
        raise ValueError(f"memflex selected no tensor (mu={p.mu}, sigma={sigma:.3g}); raise mu or lower sigma")
    return Localization(selected=selected, details={"mu": p.mu, "sigma": sigma, "tensors": stats})
