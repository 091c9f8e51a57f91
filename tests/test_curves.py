"""Curves (Figure 4) start from the vanilla model at step 0 (issue 30: a mutation that
moved or replaced that point was caught only by a six-minute end-to-end test)."""

from __future__ import annotations

from helpers import TINY_SPEC, one_epoch
from knowundo_bench.evaluate.curves import CurveRecorder, curve_point
from knowundo_bench.records.files import load_record
from knowundo_bench.records.schema import Metrics, ScopeMetrics
from knowundo_bench.testing import run_spec


def metrics(unlearn: float, retention: float) -> Metrics:
    return Metrics(unlearn=ScopeMetrics(success=unlearn, ppl=2.0), retention=ScopeMetrics(success=retention, ppl=3.0))


class CountingEvaluator:
    """Scope metrics that say after how many readings they were taken."""

    def __init__(self) -> None:
        self.readings = 0

    def scope_only(self, model) -> Metrics:
        self.readings += 1
        return metrics(float(self.readings), 100.0 - self.readings)


def test_the_first_point_is_the_vanilla_model_at_step_0_and_the_last_the_final_metrics():
    vanilla, final = metrics(0.0, 100.0), metrics(77.0, 55.0)
    evaluator = CountingEvaluator()
    recorder = CurveRecorder(evaluator, model=None, start=vanilla, every=2)
    for step in range(1, 6):
        recorder.after_step(step)
    points = recorder.finish(5, final)
    assert points[0] == curve_point(0, vanilla)  # measured before any step, never re-read
    assert [point.step for point in points] == [0, 2, 4, 5]
    assert [point.unlearn_success for point in points] == [0.0, 1.0, 2.0, 77.0]
    assert evaluator.readings == 2


def test_a_run_records_its_curve_from_the_vanilla_record(tmp_path):
    spec = {
        **TINY_SPEC,
        "cache_dir": str(tmp_path / "cache"),
        "methods": [one_epoch("ga", lr=5e-2)],
        "eval": {**TINY_SPEC["eval"], "every_n_steps": 2, "rouge": False},
    }
    outcome = run_spec(spec, tmp_path / "out")
    assert outcome.failed == []
    vanilla, ga = load_record(tmp_path / "out" / "vanilla.json"), load_record(tmp_path / "out" / "ga.json")
    first = ga.curve[0]
    assert first.step == 0
    assert first.unlearn_success == vanilla.metrics.unlearn.success
    assert first.retention_success == vanilla.metrics.retention.success
    assert first.unlearn_ppl == vanilla.metrics.unlearn.ppl
    assert ga.curve[-1].step == ga.training.steps and ga.curve[-1].unlearn_success == ga.metrics.unlearn.success
    assert ga.curve[-1].unlearn_success != first.unlearn_success  # the points are not all the vanilla's
