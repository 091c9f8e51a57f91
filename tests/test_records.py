"""The typed result record: today's files load, yesterday's files load, the leaderboard
reads them unchanged, and the runner's state is set before it runs."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import TINY_SPEC, one_epoch
from knowundo_bench.cli import app
from knowundo_bench.core.progress import ProgressBoard
from knowundo_bench.plugin.manager import Plugins, make_plugin_manager
from knowundo_bench.records.files import load_record, read_record, write_record
from knowundo_bench.records.schema import SCHEMA_VERSION, ResultRecord
from knowundo_bench.run.resolution import parse_spec
from knowundo_bench.run.runner import Runner

# Records written by knowundo-bench 0.1.0 (schema 1): the quickstart's four, plus a
# diverged record ("inf"/"nan" strings) and a failed one written with 0.1.0's
# write_record; and the leaderboards 0.1.0 printed for them.
SCHEMA1 = Path(__file__).parent / "fixtures" / "records-schema1"


def test_schema1_records_load_typed():
    records = {path.stem: load_record(path) for path in sorted(SCHEMA1.glob("*.json"))}
    assert set(records) == {"vanilla", "ga", "ga_gd", "memflex", "diverged", "broken"}
    diverged, broken = records["diverged"], records["broken"]
    assert diverged.status == "nonfinite" and diverged.metrics.unlearn.ppl == math.inf
    assert math.isnan(diverged.metrics.retention.rouge_l) and math.isnan(diverged.training.step_losses[-1])
    assert broken.status == "failed" and broken.error == "RuntimeError: boom" and broken.metrics is None
    memflex = records["memflex"]
    assert memflex is not None and memflex.schema_version == 1
    raw = json.loads((SCHEMA1 / "memflex.json").read_text())
    assert raw["schema"] == 1 and "schema_version" not in raw
    assert memflex.metrics.unlearn.success == raw["metrics"]["unlearn"]["success"]
    assert memflex.localizer.selected == raw["localizer"]["selected"]
    assert memflex.localizer.model_extra["mu"] == raw["localizer"]["mu"]  # details kept as extra fields
    assert memflex.training.step_losses == raw["training"]["step_losses"]
    assert memflex.metrics.prompt_prefixes["helpful_assistant"].retention.success == pytest.approx(
        raw["metrics"]["prompt_prefixes"]["helpful_assistant"]["retention"]["success"]
    )


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["-f", "md"], "leaderboard.md.expected"),
        (["-f", "csv"], "leaderboard.csv.expected"),
        (["-f", "json"], "leaderboard.json.expected"),
        (["--view", "efficiency"], "efficiency.md.expected"),
    ],
)
def test_leaderboard_of_schema1_records_shows_what_0_1_0_printed(tmp_path, monkeypatch, arguments, expected):
    monkeypatch.setenv("KNOWUNDO_BENCH_CACHE", str(tmp_path / "cache"))
    results = tmp_path / "results"
    shutil.copytree(SCHEMA1, results)
    result = CliRunner().invoke(app, ["leaderboard", str(results), *arguments])
    assert result.exit_code == 0, result.output
    old = (SCHEMA1 / expected).read_text()
    if expected.endswith(".md.expected"):  # 0.1.0's values; the layout as issue 31 left it (ppl format, notes)
        assert result.stdout == old
    elif expected.endswith(".json.expected"):  # 0.2 rows add identity and interval keys to 0.1's
        new_rows = json.loads(result.stdout)
        assert [{key: row[key] for key in old_row} for row, old_row in zip(new_rows, json.loads(old), strict=True)] == (
            json.loads(old)
        )
    else:
        new_rows = list(csv.DictReader(io.StringIO(result.stdout)))
        old_rows = list(csv.DictReader(io.StringIO(old)))
        assert [{key: row[key] for key in old_row} for row, old_row in zip(new_rows, old_rows, strict=True)] == old_rows


def test_round_trip_keeps_non_finite_numbers_and_extra_fields(tmp_path):
    record = ResultRecord.model_validate(
        {
            "method": "ga",
            "order": 1,
            "metrics": {"unlearn": {"success": 99.0, "ppl": math.inf}, "retention": {"ppl": math.nan}},
            "localizer": {"name": "memflex", "selected": ["w"], "sigma": 0.5},
            "plugin_field": {"anything": [1, 2]},
        }
    )
    path = write_record(tmp_path, "ga", record)
    stored = read_record(path)
    assert stored["schema_version"] == SCHEMA_VERSION and stored["kind"] == "knowundo-bench/result"
    assert stored["metrics"]["unlearn"]["ppl"] == "inf" and stored["metrics"]["retention"]["ppl"] == "nan"
    again = load_record(path)
    assert again.metrics.unlearn.ppl == math.inf and math.isnan(again.metrics.retention.ppl)
    assert again.localizer.model_extra == {"sigma": 0.5} and again.model_extra == {"plugin_field": {"anything": [1, 2]}}


def test_a_record_that_breaks_the_schema_is_skipped_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("KNOWUNDO_BENCH_CACHE", str(tmp_path / "cache"))
    results = tmp_path / "results"
    shutil.copytree(SCHEMA1, results)
    (results / "bad.json").write_text(json.dumps({"kind": "knowundo-bench/result", "method": "x", "status": "odd"}))
    assert read_record(results / "bad.json") is not None  # a result file...
    assert load_record(results / "bad.json") is None  # ...that the typed reader rejects
    result = CliRunner().invoke(app, ["leaderboard", str(results)])
    assert result.exit_code == 0
    assert result.stdout == (SCHEMA1 / "leaderboard.md.expected").read_text()
    assert result.stderr == "warning: skipped bad.json: status: Input should be 'ok', 'nonfinite' or 'failed'\n"


def test_runner_sets_every_attribute_before_it_runs(tmp_path):
    plugins = Plugins(make_plugin_manager(load_entry_points=False))
    spec = {**TINY_SPEC, "cache_dir": str(tmp_path / "cache"), "methods": [one_epoch("ga")]}
    with ProgressBoard(console=None, enabled=False) as board:
        runner = Runner(parse_spec(spec, plugins), plugins, tmp_path / "out", board)
        attributes = set(vars(runner))
        outcome = runner.run()
    assert outcome.failed == []
    assert set(vars(runner)) == attributes, f"first assigned in run(): {set(vars(runner)) - attributes}"
    record = load_record(outcome.records["ga"])
    assert record.schema_version == SCHEMA_VERSION and record.training.steps > 0
