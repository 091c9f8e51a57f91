"""Metric curves (Figure 4): the scope metrics every ``eval.every_n_steps`` optimizer
steps, starting from the vanilla model's at step 0."""

from __future__ import annotations

import torch

from knowundo_bench.evaluate.report import Evaluator
from knowundo_bench.records.schema import CurvePoint, Metrics


def curve_point(step: int, metrics: Metrics) -> CurvePoint:
    return CurvePoint(
        step=step,
        unlearn_success=metrics.unlearn.success,
        retention_success=metrics.retention.success,
        unlearn_ppl=metrics.unlearn.ppl,
        retention_ppl=metrics.retention.ppl,
    )


class CurveRecorder:
    """Records a curve point after every ``every``-th optimizer step of ``model``, from
    the vanilla model's metrics (``start``) at step 0; points are the model's own, never
    a guard's."""

    def __init__(self, evaluator: Evaluator, model: torch.nn.Module, start: Metrics, every: int) -> None:
        self.evaluator, self.model, self.every = evaluator, model, every
        self.points = [curve_point(0, start)]

    def after_step(self, step: int) -> None:
        if step % self.every == 0:
            self.points.append(curve_point(step, self.evaluator.scope_only(self.model)))

    def finish(self, steps: int, final: Metrics | None) -> list[CurvePoint]:
        """The curve with its last point at ``steps`` (the final metrics, or the model's
        own scope metrics when ``final`` is None: a guarded unit's are the guard's)."""
        if self.points[-1].step != steps:
            self.points.append(
                curve_point(steps, final if final is not None else self.evaluator.scope_only(self.model))
            )
        return self.points
