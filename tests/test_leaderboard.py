"""Leaderboard rows and exports from result records, diverged perplexities included."""

from __future__ import annotations

import csv
import io
import json
import math
from types import SimpleNamespace

import numpy
import pytest
from typer.testing import CliRunner

import knowundo_bench.leaderboard.aggregate as aggregate_module
from knowundo_bench.cli import app
from knowundo_bench.core.errors import InputError
from knowundo_bench.leaderboard import leaderboard_rows, render
from knowundo_bench.leaderboard.aggregate import GENERAL_KEYS, IDENTITY_KEYS, ROW_KEYS
from knowundo_bench.leaderboard.export import fmt_ppl
from knowundo_bench.records.files import read_record, write_record
from knowundo_bench.records.memory import CPU_MEMORY
from knowundo_bench.records.schema import (
    AttackMetrics,
    Metrics,
    MiaMetrics,
    PrefixedMetrics,
    ResultRecord,
    RunIdentity,
    ScopeMetrics,
    TrainingSummary,
    VanillaRecord,
)


def metrics(unlearn_success, unlearn_ppl, retention_success):
    return {
        "unlearn": {"success": unlearn_success, "ppl": unlearn_ppl, "rouge_l": 3.0},
        "retention": {"success": retention_success, "ppl": 1.5, "rouge_l": 90.0},
        "avg_success": (unlearn_success + retention_success) / 2,
    }


def make_results(directory):
    write_record(
        directory,
        "ga",
        {
            "method": "ga",
            "order": 1,
            "status": "ok",
            "metrics": metrics(97.0, math.inf, 2.5),
            "training": {"sec_per_step": 0.125, "peak_mem_gb": 0.5},
        },
    )
    write_record(
        directory, "vanilla", {"method": "vanilla", "order": 0, "status": "ok", "metrics": metrics(0.0, 1.02, 100.0)}
    )
    write_record(directory, "broken", {"method": "broken", "order": 2, "status": "failed", "error": "boom"})
    (directory / "notes.json").write_text('{"unrelated": true}')  # ignored: not a result record


def test_records_are_standard_json_and_round_trip(tmp_path):
    make_results(tmp_path)
    text = (tmp_path / "ga.json").read_text()
    json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))  # no Infinity/NaN tokens
    assert read_record(tmp_path / "ga.json")["metrics"]["unlearn"]["ppl"] == "inf"
    assert not list(tmp_path.glob(".*"))  # no temp files left behind


def test_rows_order_and_values(tmp_path):
    make_results(tmp_path)
    rows = leaderboard_rows(tmp_path)
    assert [r["method"] for r in rows] == ["vanilla", "ga", "broken"]
    assert rows[1]["unlearn_ppl"] == math.inf and rows[1]["sec_per_step"] == 0.125
    assert rows[2]["status"] == "failed" and rows[2]["unlearn_success"] is None
    assert set(ROW_KEYS) | set(GENERAL_KEYS) | set(IDENTITY_KEYS) <= set(rows[0])
    extra = set(rows[0]) - set(ROW_KEYS) - set(GENERAL_KEYS) - set(IDENTITY_KEYS)
    aggregation = {"avg_success_vs_best", "ci95_unclipped", "collapsed_seeds"}
    assert extra and all(key.endswith("_ci95") or key in aggregation for key in extra)
    assert all(rows[0][key] is None for key in GENERAL_KEYS)  # null where not run


def test_markdown_layout(tmp_path):
    make_results(tmp_path)
    lines = render(leaderboard_rows(tmp_path), "md").splitlines()
    assert lines[0].startswith("| Method | Unlearn Succ↑ | Unlearn PPL↑ | Unlearn ROUGE-L↓ | Retention Succ↑")
    assert lines[0].endswith("| Avg Succ↑ | s/step | peak GB |")
    assert lines[3] == "| ga | 97.00 | inf | 3.00 | 2.50 | 1.50 | 90.00 | 49.75 | 0.125 | 0.50 |"
    assert lines[4].startswith("| broken (failed) | – |")


def test_ppl_formatting():
    """One format: scientific from 10^4 up, "inf" only for an overflow (issue 31)."""
    assert fmt_ppl(2.5e10) == "2.5e+10" and fmt_ppl(7.9e7) == "7.9e+07" and fmt_ppl(math.inf) == "inf"
    assert fmt_ppl(12345.0) == "1.2e+04" and fmt_ppl(1.0449) == "1.04"
    assert fmt_ppl(math.nan) == "nan" and fmt_ppl(None) == "–"


def test_csv_and_json_exports(tmp_path):
    make_results(tmp_path)
    rows = leaderboard_rows(tmp_path)
    table = list(csv.DictReader(io.StringIO(render(rows, "csv"))))
    assert [r["method"] for r in table] == ["vanilla", "ga", "broken"]
    assert table[1]["unlearn_ppl"] == "inf" and table[2]["avg_success"] == ""
    result = CliRunner().invoke(app, ["leaderboard", str(tmp_path), "--format", "json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data[1]["unlearn_ppl"] == "inf" and data[0]["retention_success"] == 100.0
    for key in (
        "method",
        "unlearn_success",
        "unlearn_ppl",
        "unlearn_rouge_l",
        "retention_success",
        "retention_ppl",
        "retention_rouge_l",
        "avg_success",
        "sec_per_step",
        "peak_mem_gb",
    ):
        assert key in data[0]


def test_general_tasks_and_prompt_prefixes_become_columns(tmp_path):
    general = {"mmlu": 30.0, "arc_challenge": 25.0, "truthfulqa_mc2": 45.5, "social_iqa": 33.0, "general_avg": 33.375}
    for order, (label, retention) in enumerate((("vanilla", 100.0), ("ga", 2.5))):
        body = metrics(50.0, 2.0, retention)
        body["general"] = general
        body["prompt_prefixes"] = {
            "helpful": {"unlearn": {"success": 60.0}, "retention": {"success": retention / 2}, "avg_success": 0.0}
        }
        write_record(tmp_path, label, {"method": label, "order": order, "status": "ok", "metrics": body})
    rows = leaderboard_rows(tmp_path)
    assert rows[1]["mmlu"] == 30.0 and rows[1]["race"] is None and rows[1]["general_avg"] == 33.375
    assert rows[1]["unlearn_success@helpful"] == 60.0 and rows[1]["retention_success@helpful"] == 1.25
    lines = render(rows, "md").splitlines()
    assert (
        "| Unlearn Succ@helpful | Retention Succ@helpful | MMLU | ARC | TruthfulQA | SIQA | RACE | General Avg |"
        in lines[0]
    )
    assert lines[3].endswith("| 60.00 | 1.25 | 30.00 | 25.00 | 45.50 | 33.00 | – | 33.38 |")
    table = list(csv.DictReader(io.StringIO(render(rows, "csv"))))
    assert table[0]["retention_success@helpful"] == "50.0" and table[0]["race"] == ""


def scored_records(method: str, unlearn_rate: float, retention_rate: float, rng) -> list:
    """Three seeds of a method whose per-pair accuracies (40 val pairs per scope) are
    drawn at the given rates: its records as the runner writes them."""
    import numpy

    from knowundo_bench.records.schema import Metrics, ResultRecord, ScopeMetrics

    records = []
    for seed in (0, 1, 2):
        unlearn = (rng.random(40) < unlearn_rate).astype(float) * 100
        retention = (rng.random(40) < retention_rate).astype(float) * 100
        success = (100 - float(numpy.mean(unlearn)), float(numpy.mean(retention)))
        metrics = Metrics(
            unlearn=ScopeMetrics(success=success[0]),
            retention=ScopeMetrics(success=success[1]),
            avg_success=sum(success) / 2,
            raw={
                "unlearn": {"example_accuracy": unlearn.tolist()},
                "retention": {"example_accuracy": retention.tolist()},
            },
        )
        records.append(ResultRecord(method=method, method_name=method, seed=seed, run="r", metrics=metrics))
    return records


def test_a_clearly_worse_method_is_not_marked_near_the_best():
    """≈best marks the best row and rows whose paired difference from it is not
    significant; a method far below on every seed and pair is left unmarked, with its
    interval of the difference to the best above 0 (a mark on every row fails this)."""
    import numpy

    from knowundo_bench.leaderboard.aggregate import aggregate, mark_best

    rng = numpy.random.default_rng(0)
    groups = [
        scored_records("best", 0.05, 0.95, rng),
        scored_records("twin", 0.05, 0.95, rng),  # the same rates: within noise of the best
        scored_records("worse", 0.60, 0.40, rng),
    ]
    rows = [aggregate(group) for group in groups]
    mark_best(rows, groups)
    marks = {row["method"]: row["avg_success_not_below_best"] for row in rows}
    best = max(rows, key=lambda row: row["avg_success"])["method"]
    assert marks[best] is True
    assert marks["worse"] is False
    difference, low, high = next(row for row in rows if row["method"] == "worse")["avg_success_vs_best"]
    assert 0 < low <= difference <= high
    twin = "twin" if best == "best" else "best"
    assert marks[twin] is True


T_975 = {1: 12.706204736174705, 2: 4.302652729911275}  # Student's t, 97.5% quantile, by degrees of freedom


def constant_records(method: str, run: str, unlearn: list[float], retention: list[float]) -> list:
    """One record per seed whose four val pairs per scope all read the same accuracy
    (so resampling the pairs changes nothing: the interval is the seeds' alone)."""
    from knowundo_bench.records.schema import Metrics, ResultRecord, ScopeMetrics

    records = []
    for seed, (u, r) in enumerate(zip(unlearn, retention, strict=True)):
        metrics = Metrics(
            unlearn=ScopeMetrics(success=100 - u),
            retention=ScopeMetrics(success=r),
            avg_success=((100 - u) + r) / 2,
            raw={"unlearn": {"example_accuracy": [u] * 4}, "retention": {"example_accuracy": [r] * 4}},
        )
        records.append(
            ResultRecord(
                method=method, method_name=method, seed=seed, run=run, unit=f"{method}@{seed}", metrics=metrics
            )
        )
    return records


def test_the_difference_of_two_runs_is_a_t_interval_over_both_runs_seed_means():
    import statistics

    from knowundo_bench.leaderboard.aggregate import pair_scores
    from knowundo_bench.leaderboard.stats import unpaired_difference

    first = pair_scores(constant_records("ga", "a", [10, 20, 30], [90, 80, 85]))  # Avg 90, 80, 77.5
    second = pair_scores(constant_records("ga", "b", [50, 60], [50, 40]))  # Avg 50, 40
    difference, (low, high) = unpaired_difference(second, first)
    spread = statistics.variance([90, 80, 77.5]) / 3 + statistics.variance([50, 40]) / 2
    assert difference == pytest.approx(45 - 82.5, abs=1e-12)
    assert (high - low) / 2 == pytest.approx(T_975[1] * math.sqrt(spread), rel=1e-9)  # the smaller run's n - 1
    assert (low + high) / 2 == pytest.approx(difference, abs=1e-12)
    third = pair_scores(constant_records("ga", "c", [50, 60, 40], [50, 40, 45]))  # Avg 50, 40, 52.5
    difference, (low, high) = unpaired_difference(third, first)
    spread = statistics.variance([90, 80, 77.5]) / 3 + statistics.variance([50, 40, 52.5]) / 3
    assert difference == pytest.approx(47.5 - 82.5, abs=1e-12)
    assert (high - low) / 2 == pytest.approx(T_975[2] * math.sqrt(spread), rel=1e-9)


def test_compare_gives_each_shared_method_the_second_run_minus_the_first(tmp_path):
    from knowundo_bench.leaderboard.aggregate import method_differences

    runs = {
        "a": [*constant_records("ga", "a", [10, 20, 30], [90, 80, 85]), *constant_records("npo", "a", [5], [95])],
        "b": [*constant_records("ga", "b", [50, 60], [50, 40]), *constant_records("vanilla", "b", [0], [100])],
    }
    runs["a"].append(constant_records("vanilla", "a", [0], [100])[0])
    for name, records in runs.items():
        for record in records:
            write_record(tmp_path / name, record.unit, record)
    (row,) = method_differences(tmp_path / "a", tmp_path / "b")  # npo is in one run only, vanilla is no method
    assert row["method"] == "ga" and row["first"] == str(tmp_path / "a") and row["second"] == str(tmp_path / "b")
    assert row["avg_success_difference"] == pytest.approx(-37.5, abs=1e-12)
    low, high = row["avg_success_difference_ci95"]
    assert low < -37.5 < high and high - low > 0


def test_the_robustness_view_keeps_each_prefix_and_attack_with_its_intervals():
    from knowundo_bench.leaderboard.aggregate import MIA_KEYS, robustness_rows

    row = {
        "method": "ga",
        "unlearn_success": 90.0,
        "unlearn_success_ci95": [85.0, 95.0],
        "retention_success": 40.0,
        "unlearn_success@helpful": 88.0,
        "recovery@helpful": 2.0,
        "retention_success@helpful": 42.0,
        "unlearn_success@quantize4": 60.0,
        "unlearn_success@quantize4_ci95": [50.0, 70.0],
        "recovery@quantize4": 30.0,
        "recovery@quantize4_ci95": [20.0, 40.0],
        "retention_success@quantize4": 45.0,
        "privleak@quantize4": 3.5,
        "mia_auc_mink": 0.61,
        "privleak": 1.5,
        "sec_per_step": 0.2,
        "run": "r",
        "unit": "ga@0",
        "status": "ok",
        "n_seeds": 3,
    }
    plain = {**{key: row[key] for key in ("method", "unlearn_success", "retention_success")}, "privleak": 1.5}
    (shown,) = robustness_rows([row, plain])[:1]
    assert list(shown) == [
        "method",
        "unlearn_success",
        "unlearn_success_ci95",
        "retention_success",
        "unlearn_success@helpful",
        "recovery@helpful",
        "retention_success@helpful",
        "unlearn_success@quantize4",
        "unlearn_success@quantize4_ci95",
        "recovery@quantize4",
        "recovery@quantize4_ci95",
        "retention_success@quantize4",
        "privleak@quantize4",
        *MIA_KEYS,
        "privleak",
        "run",
        "unit",
        "status",
        "n_seeds",
    ]
    assert {key: shown[key] for key in shown if key != "method" and not key.endswith("_ci95")} == {
        key: row.get(key) for key in shown if key != "method" and not key.endswith("_ci95")
    }
    assert shown["recovery@quantize4_ci95"] == [20.0, 40.0]
    other = robustness_rows([row, plain])[1]
    assert other["recovery@quantize4"] is None and "run" not in other and "unlearn_success_ci95" not in other


def bootstrap_variance(unlearn, retention, rng, resamples: int) -> float:
    """The val-pair bootstrap variance of a run's seed-averaged Avg Success, written out:
    ``resamples`` draws of the pairs (the same draw for every seed), variance over draws."""
    import numpy

    unlearn_draw = rng.integers(0, unlearn.shape[1], size=(resamples, unlearn.shape[1]))
    retention_draw = rng.integers(0, retention.shape[1], size=(resamples, retention.shape[1]))
    means = [
        numpy.mean(((100 - unlearn[:, u].mean(axis=1)) + retention[:, r].mean(axis=1)) / 2)
        for u, r in zip(unlearn_draw, retention_draw, strict=True)
    ]
    return float(numpy.var(means, ddof=1))


def test_the_difference_of_two_runs_adds_each_runs_pair_bootstrap_variance():
    """With one seed per run there is no seed variance: the interval is the normal
    quantile times the root of both runs' val-pair bootstrap variances, drawn in order
    from one generator seeded 0."""
    import numpy

    from knowundo_bench.leaderboard.stats import RESAMPLES, PairScores, unpaired_difference

    first = PairScores({0: numpy.array([0.0, 100, 100, 0, 100])}, {0: numpy.array([100.0, 100, 0, 100])})
    second = PairScores({0: numpy.array([100.0, 100, 100, 0, 100])}, {0: numpy.array([0.0, 100, 0, 0])})
    difference, (low, high) = unpaired_difference(first, second)
    rng = numpy.random.default_rng(0)
    variances = [
        bootstrap_variance(numpy.stack([s.unlearn[0]]), numpy.stack([s.retention[0]]), rng, RESAMPLES)
        for s in (first, second)
    ]
    assert difference == pytest.approx(((100 - 60) + 75) / 2 - ((100 - 80) + 25) / 2, abs=1e-12)
    assert (high - low) / 2 == pytest.approx(1.959963984540054 * math.sqrt(sum(variances)), rel=1e-9)
    assert min(variances) > 0


def test_one_seed_of_constant_pairs_has_no_interval_width():
    from knowundo_bench.leaderboard.aggregate import pair_scores
    from knowundo_bench.leaderboard.stats import paired_difference, unpaired_difference

    one = pair_scores(constant_records("ga", "a", [10], [90]))
    other = pair_scores(constant_records("ga", "b", [30], [60]))
    for compute in (paired_difference, unpaired_difference):
        difference, (low, high) = compute(one, other)
        assert difference == pytest.approx(90 - 65, abs=1e-12) and low == pytest.approx(high, abs=1e-12)
    two = pair_scores(constant_records("ga", "a", [10, 20], [90, 90]))  # Avg 90, 85
    base = pair_scores(constant_records("ga", "b", [30, 30], [60, 60]))  # Avg 65, 65
    difference, (low, high) = paired_difference(two, base)
    assert difference == pytest.approx(22.5, abs=1e-12)
    assert (high - low) / 2 == pytest.approx(T_975[1] * math.sqrt(12.5 / 2), rel=1e-9)  # differences 25, 20


def test_compare_lists_methods_of_the_first_run_only_and_blanks_those_without_pairs(tmp_path):
    from knowundo_bench.leaderboard.aggregate import method_differences

    without_pairs = constant_records("simnpo", "b", [10], [90])[0]
    without_pairs.metrics.raw = None
    runs = {
        "a": [*constant_records("ga", "a", [10, 20], [90, 80]), *constant_records("simnpo", "a", [10], [90])],
        "b": [
            *constant_records("ga", "b", [50, 60], [50, 40]),
            *constant_records("npo", "b", [5], [95]),
            without_pairs,
        ],
    }
    for name, records in runs.items():
        for record in records:
            write_record(tmp_path / name, record.unit, record)
    rows = {row["method"]: row for row in method_differences(tmp_path / "a", tmp_path / "b")}
    assert list(rows) == ["ga", "simnpo"]  # npo is the second run's only
    assert rows["simnpo"]["avg_success_difference"] is None and rows["simnpo"]["avg_success_difference_ci95"] is None


def test_t_and_geometric_intervals_by_hand():
    from knowundo_bench.leaderboard.stats import geometric_interval, t_interval

    for bad in ([], [1.0, None], [1.0, float("nan")]):
        assert math.isnan(t_interval(bad)[0]) and t_interval(bad)[1] is None
        assert math.isnan(geometric_interval(bad)[0]) and geometric_interval(bad)[1] is None
    assert t_interval([5.0]) == (5.0, None)
    mean, (low, high) = t_interval([1.0, 2.0])
    assert mean == 1.5 and (low, high) == pytest.approx((1.5 - T_975[1] * 0.5, 1.5 + T_975[1] * 0.5), rel=1e-9)
    mean, (low, high) = t_interval([1.0, 2.0, 3.0])
    half = T_975[2] / math.sqrt(3)
    assert mean == 2.0 and (low, high) == pytest.approx((2 - half, 2 + half), rel=1e-9)
    center, (low, high) = geometric_interval([2.0, 8.0])  # logs: ln 2 and 3 ln 2
    half = T_975[1] * math.log(2)
    assert center == pytest.approx(4.0) and (low, high) == pytest.approx((4 / math.exp(half), 4 * math.exp(half)))
    center, (low, high) = geometric_interval([0.5, 2.0])  # below 1 is a perplexity too
    assert center == pytest.approx(1.0) and low < 1 < high
    assert math.isnan(geometric_interval([0.0, 1.0])[0]) and math.isnan(geometric_interval([-1.0, 1.0])[0])
    assert geometric_interval([math.inf, 2.0]) == (math.inf, None)


def scores(unlearn: dict, retention: dict):
    import numpy

    from knowundo_bench.leaderboard.stats import PairScores

    return PairScores(
        {seed: numpy.asarray(v, dtype=float) for seed, v in unlearn.items()},
        {seed: numpy.asarray(v, dtype=float) for seed, v in retention.items()},
    )


def test_paired_difference_uses_shared_seeds_and_the_same_pairs_only():
    from knowundo_bench.leaderboard.stats import paired_difference, unpaired_difference

    assert scores({0: [0], 1: [0]}, {0: [100]}).seeds() == {0}
    a = scores({0: [0, 100, 0], 1: [0, 0, 0]}, {0: [100, 100], 1: [100, 0]})
    b = scores({1: [100, 100, 100], 2: [0, 0, 0]}, {1: [0, 0], 2: [0, 0]})
    difference, (low, high) = paired_difference(a, b)  # seed 1 only: Avg 75 against 0
    assert difference == pytest.approx(75.0) and low < 75 < high
    assert paired_difference(a, scores({5: [0, 0, 0]}, {5: [0, 0]})) is None  # no seed in common
    assert paired_difference(a, scores({1: [0, 0]}, {1: [0, 0]})) is None  # other unlearn pairs
    assert paired_difference(a, scores({1: [0, 0, 0]}, {1: [0, 0, 0]})) is None  # other retention pairs
    assert paired_difference(a, scores({1: []}, {1: [0, 0]})) is None  # no pairs
    assert paired_difference(scores({1: []}, {1: [0, 0]}), a) is None
    single = scores({0: [100]}, {0: [0]})
    assert paired_difference(single, single)[0] == 0.0  # one pair per scope is a comparison too
    assert unpaired_difference(a, scores({0: [0]}, {1: [0]})) is None  # no seed with both scopes


def test_paired_difference_adds_the_pair_bootstrap_variance_of_the_differences():
    import numpy

    from knowundo_bench.leaderboard.stats import RESAMPLES, paired_difference

    a = scores({0: [0, 100, 100, 0, 100]}, {0: [100, 100, 0, 100]})
    b = scores({0: [100, 100, 100, 0, 0]}, {0: [0, 100, 0, 0]})
    difference, (low, high) = paired_difference(a, b)
    rng = numpy.random.default_rng(0)
    u_draw = rng.integers(0, 5, size=(RESAMPLES, 5))
    r_draw = rng.integers(0, 4, size=(RESAMPLES, 4))

    def avg(s, u, r):
        return ((100 - s.unlearn[0][u].mean()) + s.retention[0][r].mean()) / 2

    variance = numpy.var([avg(a, u, r) - avg(b, u, r) for u, r in zip(u_draw, r_draw, strict=True)], ddof=1)
    assert difference == pytest.approx(((100 - 60) + 75) / 2 - ((100 - 60) + 25) / 2)
    assert (high - low) / 2 == pytest.approx(1.959963984540054 * math.sqrt(variance), rel=1e-9)


def test_a_run_without_val_pairs_has_no_difference():
    from knowundo_bench.leaderboard.stats import unpaired_difference

    a = scores({0: [0, 100]}, {0: [100, 100]})
    assert unpaired_difference(a, scores({0: []}, {0: [100]})) is None
    assert unpaired_difference(scores({0: [0]}, {0: []}), a) is None


# One method's row over its seeds (aggregate), each seed's row given by hand
# --------------------------------------------------------------------------------------


def seed_row(seed, status="ok", **values):
    """A unit's row as ``record_row`` gives it, with ``values`` over the defaults."""
    row = {"method": "ga", "status": status, "run": "r", "unit": f"ga@{seed}", "seed": seed, "model": "m"}
    row |= {"data": "d", "target_met": None, "memory_kind": None, "collapsed": None, "peak_mem_gb": None}
    return SimpleNamespace(seed=seed, row=row | values)


def aggregated(monkeypatch, *units):
    monkeypatch.setattr(aggregate_module, "record_row", lambda unit, oracle: unit.row)
    return aggregate_module.aggregate(list(units))


def test_only_bounded_geometric_general_and_attack_columns_get_an_interval(monkeypatch):
    """Mutations: the test of which columns get ``_ci95`` turned round or joined with "and"."""
    values = {"unlearn_success": 50.0, "unlearn_ppl": 3.0, "recovery@quantize": 5.0, "mmlu": 40.0}
    values["sec_per_step"] = 0.5
    row = aggregated(monkeypatch, *(seed_row(s, **{k: v + s for k, v in values.items()}) for s in range(3)))
    for key in ("unlearn_success", "unlearn_ppl", "recovery@quantize", "mmlu"):
        assert row[f"{key}_ci95"] is not None and len(row[f"{key}_ci95"]) == 2, key
    assert "sec_per_step_ci95" not in row and row["sec_per_step"] == pytest.approx(1.5)


def test_a_row_is_collapsed_when_any_finished_seed_is_and_counts_them(monkeypatch):
    """Mutations: collapse's ``None`` without readings lost, or the readings ignored."""
    row = aggregated(monkeypatch, seed_row(0, collapsed=True), seed_row(1, collapsed=False), seed_row(2))
    assert (row["collapsed"], row["collapsed_seeds"]) == (True, 1)
    row = aggregated(monkeypatch, seed_row(0, collapsed=False), seed_row(1, collapsed=False))
    assert (row["collapsed"], row["collapsed_seeds"]) == (False, 0)
    row = aggregated(monkeypatch, seed_row(0), seed_row(1), seed_row(2, "failed", collapsed=True))
    assert (row["collapsed"], row["collapsed_seeds"]) == (None, None)


def test_peak_memory_is_averaged_only_over_one_kind_of_measurement(monkeypatch):
    """Mutations: two kinds kept (``> 2``), the mixed peak blanked as "" or under another key."""
    rss = aggregated(
        monkeypatch, seed_row(0, peak_mem_gb=1.0, memory_kind="rss"), seed_row(1, peak_mem_gb=3.0, memory_kind="rss")
    )
    assert (rss["peak_mem_gb"], rss["memory_kind"]) == (pytest.approx(2.0), "rss")
    mixed = aggregated(
        monkeypatch, seed_row(0, peak_mem_gb=1.0, memory_kind="rss"), seed_row(1, peak_mem_gb=3.0, memory_kind="cuda")
    )
    assert mixed["peak_mem_gb"] is None and mixed["memory_kind"] is None


def test_status_counts_each_unfinished_kind_over_the_seeds(monkeypatch):
    """Mutations: the bad statuses not counted, "ok" counted among them, the status dropped."""
    assert aggregated(monkeypatch, seed_row(0), seed_row(1))["status"] == "ok"
    mixed = aggregated(monkeypatch, seed_row(0), seed_row(1, "failed"), seed_row(2, "failed"), seed_row(3, "nonfinite"))
    assert mixed["status"] == "failed 2/4, nonfinite 1/4"
    assert aggregated(monkeypatch, seed_row(0, "failed"))["status"] == "failed"


def test_identity_columns_close_the_row(monkeypatch):
    """The identity follows the metrics in every export (``target_met`` is not a number to
    average). Mutation: ``target_met`` left out of the skipped keys."""
    row = aggregated(monkeypatch, seed_row(0, target_met=True), seed_row(1, target_met=False))
    assert list(row)[-6:] == ["run", "model", "data", "seeds", "n_seeds", "target_met"]
    assert row["target_met"] is False and row["seeds"] == [0, 1] and row["n_seeds"] == 2
    assert (row["run"], row["model"], row["data"]) == ("r", "m", "d")
    met = aggregated(monkeypatch, seed_row(0, target_met=True), seed_row(1, "failed", target_met=True), seed_row(2))
    assert met["target_met"] is True and met["n_seeds"] == 2 and met["seeds"] == [0, 1, 2]
    assert aggregated(monkeypatch, seed_row(0), seed_row(1))["target_met"] is None


def test_pair_scores_are_floats_with_nan_for_unscored_pairs_and_none_without_records():
    """A pair without answer tokens is stored as null (NaN in JSON). Mutations: the arrays'
    float type dropped, a record without metrics read, no records giving empty scores."""

    def unit(seed, metrics):
        return SimpleNamespace(seed=seed, metrics=metrics)

    raw = {"unlearn": {"example_accuracy": [100, None, 0]}, "retention": {"example_accuracy": [None, 50]}}
    scores = aggregate_module.pair_scores([unit(0, SimpleNamespace(raw=raw))])
    assert scores is not None
    for arrays in (scores.unlearn, scores.retention):
        assert arrays[0].dtype == numpy.float64 and numpy.isnan(arrays[0]).sum() == 1
    assert aggregate_module.pair_scores([unit(0, None)]) is None
    assert aggregate_module.pair_scores([]) is None


def test_recovery_and_oracle_gap_need_both_readings():
    """Mutations: ``and`` for ``or`` in recovery's and the oracle gap's test for a missing reading."""
    assert aggregate_module.recovery(70.0, 40.0) == 30.0
    assert aggregate_module.recovery(None, 40.0) is None and aggregate_module.recovery(70.0, None) is None
    oracle = {"unlearn_success": 10.0, "retention_success": None}
    method = {"unlearn_success": 30.0, "retention_success": 80.0}
    aggregate_module.oracle_gaps([oracle, method], [[SimpleNamespace(oracle=True)], [SimpleNamespace(oracle=False)]])
    assert oracle["oracle_gap"] is None and method["oracle_gap"] is None
    oracle["retention_success"] = 90.0
    aggregate_module.oracle_gaps([oracle, method], [[SimpleNamespace(oracle=True)], [SimpleNamespace(oracle=False)]])
    assert method["oracle_gap"] == 15.0 and oracle["oracle_gap"] == 0.0


# One unit's row (record_row), the oracle's AUCs, folders and the ≈best mark
# --------------------------------------------------------------------------------------


def full_record(method="vanilla", **changes):
    """A record with an identity, a vanilla target, a prompt prefix and three attacks."""
    scope = lambda success: ScopeMetrics(success=success)  # noqa: E731
    attacks = {
        "quantize": AttackMetrics(unlearn=scope(60.0), retention=scope(88.0), mia=MiaMetrics(auc_mink=0.7)),
        "relearn": AttackMetrics(unlearn=scope(90.0), retention=scope(91.0), mia=MiaMetrics(auc_mink=0.8)),
        "noise": AttackMetrics(unlearn=scope(70.0), retention=scope(89.0)),
    }
    metrics = Metrics(
        unlearn=scope(80.0),
        retention=scope(90.0),
        mia=MiaMetrics(auc_mink=0.55),
        prompt_prefixes={"sys": PrefixedMetrics(unlearn=scope(50.0), retention=scope(85.0))},
        attacks=attacks,
    )
    identity = RunIdentity(
        spec_name="s", spec_hash="h", data_source="privacy", data_hash="abc", model="tiny", seed=3, harness_version="0"
    )
    fields = dict(method=method, method_name=method, run="r", seed=3, identity=identity, metrics=metrics)
    fields |= dict(vanilla=VanillaRecord(key="k", path="p", target_met=True))
    fields["training"] = TrainingSummary(peak_mem_gb=1.0, memory_kind=CPU_MEMORY, device="NVIDIA H100")
    return ResultRecord(**(fields | changes))


def test_a_units_row_reads_every_part_of_its_record():
    """Mutations: identity, seed, run, unit, target and memory kind dropped; a prefix's or an
    attack's readings and recovery dropped; an attack compared with another oracle, or read
    without its membership inference."""
    oracle = {aggregate_module.PLAIN: 0.5, "quantize": 0.6}
    row = aggregate_module.record_row(full_record(), oracle)
    assert (row["run"], row["unit"], row["seed"], row["model"], row["data"]) == (
        "r",
        "vanilla",
        3,
        "tiny",
        "privacy:abc",
    )
    assert row["target_met"] is True and row["memory_kind"] == CPU_MEMORY
    sys, quantize = aggregate_module.attacked_keys("sys"), aggregate_module.attacked_keys("quantize")
    assert (row[sys["unlearn"]], row[sys["retention"]], row[sys["recovery"]]) == (50.0, 85.0, 30.0)
    assert (row[quantize["unlearn"]], row[quantize["retention"]], row[quantize["recovery"]]) == (60.0, 88.0, 20.0)
    assert row[quantize["privleak"]] == pytest.approx(aggregate_module.privleak(0.7, 0.6))
    relearn = aggregate_module.attacked_keys("relearn")["privleak"]
    assert row[relearn] == pytest.approx(aggregate_module.privleak(0.8, 0.5))  # no oracle under relearn: the plain one
    assert row[aggregate_module.attacked_keys("noise")["privleak"]] is None
    ga = aggregate_module.record_row(full_record("ga", unit="ga@3"))
    assert ga["target_met"] is None and ga["unit"] == "ga@3"
    bare = aggregate_module.record_row(ResultRecord(method="ga"))
    assert (bare["model"], bare["data"], bare["unit"]) == (None, None, "ga")


def test_privleak_is_none_when_either_auc_is_nan():
    assert aggregate_module.privleak(float("nan"), 0.5) is None
    assert aggregate_module.privleak(0.5, float("nan")) is None
    assert aggregate_module.privleak(0.5, 0.5) == 0.0


def test_the_oracles_aucs_skip_attacks_without_membership_inference():
    oracle = full_record("retrain", oracle=True)
    assert aggregate_module.oracle_aucs([oracle, full_record("ga")]) == {3: {"": 0.55, "quantize": 0.7, "relearn": 0.8}}


def test_missing_results_are_one_line_naming_the_folder(tmp_path):
    """Mutations: the messages and the folder they name."""
    with pytest.raises(InputError) as missing:
        aggregate_module.load_records(tmp_path / "absent")
    assert missing.value.source == str(tmp_path / "absent")
    assert str(missing.value) == f"{tmp_path / 'absent'}: results directory not found"
    with pytest.raises(InputError) as empty:
        aggregate_module.load_records(tmp_path)
    assert str(empty.value) == f"{tmp_path}: no knowundo-bench result records in this directory"
    assert empty.value.source == str(tmp_path)


def test_folders_of_one_run_are_told_apart_by_their_path_and_per_seed_rows_read_every_folder(tmp_path):
    """Mutations: the test of a run shared by two folders, the name given, the per-seed rows
    stopping at the first folder or read without the oracle."""
    folders = {name: tmp_path / name for name in ("a", "b", "c")}
    for name, folder in folders.items():
        folder.mkdir()
        run = "shared" if name != "c" else "other"
        write_record(folder, "ga", full_record("ga", run=run).model_dump(mode="json"))
        write_record(folder, "retrain", full_record("retrain", run=run, oracle=True).model_dump(mode="json"))
    shared = leaderboard_rows([folders["a"], folders["b"]])
    assert {row["run"] for row in shared} == {str(folders["a"]), str(folders["b"])}
    assert {row["run"] for row in leaderboard_rows([folders["a"], folders["c"]])} == {"shared", "other"}
    assert {row["run"] for row in leaderboard_rows([folders["a"]])} == {"shared"}
    per_seed = leaderboard_rows([folders["a"], folders["c"]], per_seed=True)
    assert sorted(row["run"] for row in per_seed) == ["other", "other", "shared", "shared"]
    assert all(row["privleak"] == 0.0 for row in per_seed)  # each against its own folder's oracle


def best_marks(monkeypatch, difference, avg=(60.0, 50.0, 45.0, 70.0), npo_raw=True):
    """mark_best on vanilla, two methods and an oracle, with the paired difference given."""
    monkeypatch.setattr(aggregate_module, "paired_difference", lambda best, other: difference)
    raw = {"unlearn": {"example_accuracy": [100.0]}, "retention": {"example_accuracy": [0.0]}}
    names = ("vanilla", "ga", "npo", "retrain")

    def record(name):
        metrics = SimpleNamespace(raw=raw if npo_raw or name != "npo" else None)
        return SimpleNamespace(method_name=name, oracle=name == "retrain", status="ok", seed=0, metrics=metrics)

    groups = [[record(name)] for name in names]
    rows = [{"method": n, "avg_success": a} for n, a in zip(names, avg, strict=True)]
    aggregate_module.mark_best(rows, groups)
    return {row["method"]: row.get("avg_success_not_below_best") for row in rows}


def test_near_best_is_a_lower_bound_not_above_0_and_never_marks_the_references(monkeypatch):
    """Mutations: vanilla or the oracle taken for a candidate, ``<`` or ``<= 1`` for ``<= 0``,
    a method without pair scores compared."""
    assert best_marks(monkeypatch, (1.0, (0.0, 2.0))) == {"vanilla": None, "ga": True, "npo": True, "retrain": None}
    assert best_marks(monkeypatch, (1.0, (0.5, 2.0)))["npo"] is False
    assert best_marks(monkeypatch, (1.0, (-0.5, 2.0)))["npo"] is True
    assert best_marks(monkeypatch, (1.0, (-0.5, 2.0)), npo_raw=False) == {
        "vanilla": None,
        "ga": True,
        "npo": None,
        "retrain": None,
    }
