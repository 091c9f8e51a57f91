"""Leaderboard rows and exports from result records, diverged perplexities included."""

from __future__ import annotations

import csv
import io
import json
import math

from typer.testing import CliRunner

from knowundo_bench.cli import app
from knowundo_bench.leaderboard import leaderboard_rows, render
from knowundo_bench.leaderboard.aggregate import GENERAL_KEYS, IDENTITY_KEYS, ROW_KEYS
from knowundo_bench.leaderboard.export import fmt_ppl
from knowundo_bench.records.files import read_record, write_record


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
    assert extra and all(key.endswith("_ci95") or key == "avg_success_vs_best" for key in extra)
    assert all(rows[0][key] is None for key in GENERAL_KEYS)  # null where not run


def test_markdown_layout(tmp_path):
    make_results(tmp_path)
    lines = render(leaderboard_rows(tmp_path), "md").splitlines()
    assert lines[0].startswith("| Method | Unlearn Succ↑ | Unlearn PPL↑ | Unlearn ROUGE-L↓ | Retention Succ↑")
    assert lines[0].endswith("| Avg Succ↑ | s/step | peak GB |")
    assert lines[3] == "| ga | 97.00 | >1e10 | 3.00 | 2.50 | 1.50 | 90.00 | 49.75 | 0.125 | 0.50 |"
    assert lines[4].startswith("| broken (failed) | – |")


def test_ppl_formatting():
    assert fmt_ppl(2.5e10) == ">1e10" and fmt_ppl(math.inf) == ">1e10"
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
