"""Reliability: resumable runs keyed by their inputs, crash safety under SIGKILL,
non-finite numbers recorded instead of crashing, the SQLite index of results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from helpers import TINY_SPEC, one_epoch
from knowundo_bench.cli import app
from knowundo_bench.config.params import TrainingParams
from knowundo_bench.core.progress import ProgressBoard
from knowundo_bench.plugin.hookspecs import hookimpl
from knowundo_bench.plugin.manager import Plugins, make_plugin_manager
from knowundo_bench.plugin.registry import MethodInfo
from knowundo_bench.records.files import read_record
from knowundo_bench.records.index import default_index_path
from knowundo_bench.run.resolution import parse_spec
from knowundo_bench.run.runner import Runner
from knowundo_bench.train.losses import answer_loss

SPEC = {
    **TINY_SPEC,
    "name": "resume",
    "eval": {"batch_size": 32, "max_new_tokens": 4, "rouge": False},
    "methods": [one_epoch("ga"), one_epoch("ga_gd")],
}
TIMING = {"sec_per_step", "peak_mem_gb"}


def run_in_process(spec: dict, output: Path, plugins: Plugins | None = None, force: bool = False):
    plugins = plugins or Plugins(make_plugin_manager(load_entry_points=False))
    with ProgressBoard(console=None, enabled=False) as board:
        return Runner(parse_spec(spec, plugins), plugins, output, board, force=force).run()


def board_without_timing(output: Path) -> list[dict]:
    result = CliRunner().invoke(app, ["leaderboard", str(output), "--format", "json"])
    assert result.exit_code == 0, result.output
    return [{k: v for k, v in row.items() if k not in TIMING} for row in json.loads(result.stdout)]


@pytest.mark.slow
def test_rerun_reuses_finished_units_and_recomputes_what_changed(tmp_path):
    first = run_in_process(SPEC, tmp_path)
    assert first.reused == [] and set(first.records) == {"vanilla", "ga", "ga_gd"}
    before = {label: read_record(path) for label, path in first.records.items()}
    again = run_in_process(SPEC, tmp_path)
    assert sorted(again.reused) == ["ga", "ga_gd", "vanilla"]
    assert not again.vanilla_reused  # nothing to compute: the vanilla model was not even loaded
    assert {label: read_record(path) for label, path in again.records.items()} == before

    changed = {**SPEC, "methods": [one_epoch("ga"), one_epoch("ga_gd", lr=2e-3)]}
    third = run_in_process(changed, tmp_path)
    assert sorted(third.reused) == ["ga", "vanilla"]
    assert read_record(tmp_path / "ga_gd.json")["unit_key"] != before["ga_gd"]["unit_key"]
    assert read_record(tmp_path / "ga.json") == before["ga"]

    forced = run_in_process(changed, tmp_path, force=True)
    assert forced.reused == []
    assert read_record(tmp_path / "ga.json")["finished_at"] >= before["ga"]["finished_at"]
    assert read_record(tmp_path / "ga.json")["metrics"] == before["ga"]["metrics"]  # same inputs, same numbers


class NanLoss:
    """A method whose loss turns NaN: the run must record it, not crash."""

    @hookimpl
    def register_methods(self):
        return [MethodInfo(name="nan_loss", description="Gradient ascent scaled by NaN.", params=TrainingParams)]

    @hookimpl
    def unlearn(self, method, model, forget, context):
        return context.train(
            model,
            objective=lambda m, b: answer_loss(m, b["forget"]) * torch.tensor(float("nan")),
            params=method.params,
            forget=forget,
        )


@pytest.mark.slow
def test_nan_losses_and_metrics_are_recorded_and_marked(tmp_path):
    plugins = Plugins(make_plugin_manager(NanLoss(), load_entry_points=False))
    spec = {**SPEC, "methods": [one_epoch("nan_loss"), one_epoch("ga")]}
    outcome = run_in_process(spec, tmp_path, plugins)
    assert outcome.failed == []
    record = read_record(tmp_path / "nan_loss.json")
    assert record["status"] == "nonfinite"
    assert any("non-finite training loss" in fault for fault in record["numerical_faults"])
    assert record["training"]["step_losses"][0] == "nan"  # stored as standard JSON
    assert read_record(tmp_path / "ga.json")["status"] == "ok"  # the next method ran normally
    table = CliRunner().invoke(app, ["leaderboard", str(tmp_path)]).stdout
    assert "| nan_loss (nonfinite) |" in table


def test_results_index_is_rebuilt_from_the_records(tmp_path):
    from knowundo_bench.records.files import write_record

    for order, label in enumerate(("vanilla", "ga")):
        write_record(
            tmp_path,
            label,
            {"method": label, "order": order, "status": "ok", "metrics": {"unlearn": {"success": 10.0 * order}}},
        )
    assert [r["method"] for r in board_without_timing(tmp_path)] == ["vanilla", "ga"]
    index = default_index_path()
    assert index.is_file()
    import sqlite3

    with sqlite3.connect(index) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 2
    (tmp_path / "ga.json").unlink()
    assert [r["method"] for r in board_without_timing(tmp_path)] == ["vanilla"]  # deleted record: dropped
    for suffix in ("", "-wal", "-shm"):
        Path(f"{index}{suffix}").unlink(missing_ok=True)
    write_record(tmp_path, "ga", {"method": "ga", "order": 1, "status": "ok", "metrics": {}})
    assert [r["method"] for r in board_without_timing(tmp_path)] == ["vanilla", "ga"]  # index rebuilt


def cli_run(spec_path: Path, output: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "knowundo_bench", "run", str(spec_path), "--output", str(output), "--no-progress"],
        env={**os.environ, "COLUMNS": "300", **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("point", "passes", "reused"),
    [
        ("vanilla_step", 2, ""),  # during vanilla training
        ("unlearn_step", 3, "vanilla"),  # during GA's unlearning
        ("evaluate", 3, ""),  # during the vanilla model's evaluation
        ("write", 2, "vanilla"),  # between GA's temp file and its rename
    ],
)
def test_sigkill_then_rerun_completes_with_the_uninterrupted_leaderboard(tmp_path, point, passes, reused):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC))
    baseline = cli_run(spec_path, tmp_path / "baseline", {"KNOWUNDO_BENCH_CACHE": str(tmp_path / "cache-a")})
    assert baseline.returncode == 0, baseline.stderr[-2000:]

    output, cache = tmp_path / "out", {"KNOWUNDO_BENCH_CACHE": str(tmp_path / "cache-b")}
    killed = cli_run(spec_path, output, {**cache, "KNOWUNDO_BENCH_FAULT": f"{point}:{passes}"})
    assert killed.returncode == -9, (point, killed.returncode, killed.stderr[-2000:])
    for path in output.glob("*.json"):  # whatever was finished is whole
        assert read_record(path) is not None, path
    resumed = cli_run(spec_path, output, cache)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    log = resumed.stdout + resumed.stderr
    if reused:
        assert f"reused finished results: {reused}" in log
    else:
        assert "reused finished results" not in log
    if point == "write":
        assert "removed a half-written file from an interrupted run: .ga.json." in log
    assert not [p.name for p in output.iterdir() if p.name.startswith(".") and p.name != ".lock"]  # no temp files
    assert board_without_timing(output) == board_without_timing(tmp_path / "baseline")
