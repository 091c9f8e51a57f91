"""Localizer ``memflex_neurons``: MemFlex's test per neuron instead of per tensor.

The paper localises whole modules and names finer granularity as future work. Here the
same direction-and-magnitude test (eq. 8-9 on the random-label gradients G_UL and G_RT)
is applied to each output row of every weight matrix: row r of a tensor is selected when
cos(G_UL[r], G_RT[r]) < mu and mean|G_UL[r]| > sigma. Tensors with a selected row are
trained with a row mask (the training loop zeroes the other rows' gradients), so updates
touch only the selected neurons. Readings: a 1-D tensor (a norm's scale, a bias) is one
unit, tested as a whole; ``sigma_percentile`` is taken over all rows of all tensors;
rows within a relative 1e-5 of a threshold are counted as ``near_threshold_rows``.
"""

from __future__ import annotations

import torch

from knowundo_bench.api import Localization, LocalizerInfo, LocalizerRun, QAPair, RetainSet, UnlearnContext, hookimpl
from knowundo_bench.plugins.localizers.memflex import (
    MemFlexLocalizerParams,
    near_threshold,
    scope_gradients,
    thresholds,
)


def row_statistics(g_ul: torch.Tensor, g_rt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per output row: cos(G_UL[r], G_RT[r]) (0 where either row is all zeros) and mean|G_UL[r]|."""
    ul = g_ul.double().reshape(g_ul.shape[0], -1) if g_ul.dim() > 1 else g_ul.double().reshape(1, -1)
    rt = g_rt.double().reshape(ul.shape)
    norms = ul.norm(dim=1) * rt.norm(dim=1)
    dots = (ul * rt).sum(dim=1)
    cos = torch.where(norms > 0, dots / norms.clamp(min=torch.finfo(torch.float64).tiny), torch.zeros_like(dots))
    return cos, ul.abs().mean(dim=1)


@hookimpl
def register_localizers() -> list[LocalizerInfo]:
    return [
        LocalizerInfo(
            name="memflex_neurons",
            description="Neurons (output rows) with cos(G_UL, G_RT) < mu and mean|G_UL| > sigma; others masked.",
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
    p: MemFlexLocalizerParams = localizer.params
    g_ul, g_rt = scope_gradients(localizer, model, forget, retain, context)
    rows = {n: row_statistics(g_ul[n], g_rt[n]) for n in g_ul}
    mu, sigma = thresholds(p, model, context, torch.cat([magnitude for _, magnitude in rows.values()]))
    selected: list[str] = []
    row_masks: dict[str, torch.Tensor] = {}
    tensors: dict[str, dict[str, int]] = {}
    near_rows = 0
    for name, (cos, magnitude) in rows.items():
        keep = (cos < mu) & (magnitude > sigma)
        near_rows += int((near_threshold(cos, mu) | near_threshold(magnitude, sigma)).sum())
        tensors[name] = {"rows": len(keep), "selected_rows": int(keep.sum())}
        if not keep.any():
            continue
        selected.append(name)
        if g_ul[name].dim() > 1 and not keep.all():
            row_masks[name] = keep
    if not selected:
        raise ValueError(f"memflex_neurons selected no row (mu={mu}, sigma={sigma:.3g}); raise mu or lower sigma")
    return Localization(
        selected=selected,
        row_masks=row_masks,
        details={"mu": mu, "sigma": sigma, "tensors": tensors, "near_threshold_rows": near_rows},
    )
