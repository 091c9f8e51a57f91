"""Executors (issue 15): ``local`` (the default, in order, in this process) and ``ray``
(units as Ray tasks on a local two-CPU Ray): same leaderboard, retries of killed workers,
failed units recorded, resumption, longest-first submission."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import TINY_SPEC, one_epoch
from knowundo_bench.plugin.execution import PendingUnit
from knowundo_bench.plugin.manager import get_plugins
from knowundo_bench.plugins.executors.ray import longest_first
from knowundo_bench.records.files import load_record
from knowundo_bench.run.identity import spec_hash
from knowundo_bench.run.resolution import parse_spec

SPEC = {
    **TINY_SPEC,
    "threads": 1,  # one thread in every process: the same floating-point sums here and in Ray workers
    "seeds": [0, 1],
    "methods": [one_epoch("ga"), one_epoch("ga_gd")],
}
RAY = {"executor": "ray", "local_cpus": 2, "num_cpus": 1, "max_retries": 1}


def test_local_is_the_default_and_where_a_suite_runs_is_not_part_of_its_identity():
    plugins = get_plugins()
    local = parse_spec(SPEC, plugins)
    remote = parse_spec({**SPEC, "execution": RAY}, plugins)
    assert local.executor is not None and local.executor.info.name == "local" and local.executor.info.in_process
    assert remote.executor is not None and remote.executor.info.name == "ray" and not remote.executor.info.in_process
    assert spec_hash(local) == spec_hash(remote)


def test_execution_fields_are_validated_like_any_plugin_section():
    from knowundo_bench.core.errors import InputError

    expected = r"execution\.num_cpu: Extra inputs are not permitted; did you mean 'num_cpus'"
    with pytest.raises(InputError, match=expected):
        parse_spec({**SPEC, "execution": {"executor": "ray", "num_cpu": 2}}, get_plugins())
    with pytest.raises(InputError, match=r"execution\.executor: unknown executor 'rey'; did you mean 'ray'"):
        parse_spec({**SPEC, "execution": {"executor": "rey"}}, get_plugins())


def test_another_executor_on_the_command_line_drops_the_specs_executor_settings():
    """``--executor local`` on a spec written for Ray runs here (ray's num_cpus is not an
    error); ``--executor ray`` on it keeps them."""
    from knowundo_bench.config.overrides import apply_overrides

    raw = {**SPEC, "execution": dict(RAY)}
    assert apply_overrides(raw, ["execution.executor=local"])["execution"] == {"executor": "local"}
    assert apply_overrides(raw, ["execution.executor=ray"])["execution"] == RAY
    assert parse_spec(apply_overrides(raw, ["execution.executor=local"]), get_plugins()).executor.info.name == "local"


def test_longest_first_orders_by_expected_cost_unknown_last():
    units = [
        PendingUnit("ga@0", "vanilla", "ga", 2.0),
        PendingUnit("memflex@0", "vanilla", "memflex", 9.0),
        PendingUnit("npo@0", "vanilla", "npo", None),
        PendingUnit("ga_gd@0", "vanilla", "ga_gd", 4.0),
    ]
    assert [u.label for u in longest_first(units)] == ["memflex@0", "ga_gd@0", "ga@0", "npo@0"]


def run_cli(tmp_path: Path, spec: dict, out: Path, *args: str, env: dict[str, str] | None = None):
    path = tmp_path / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    command = [sys.executable, "-m", "knowundo_bench", "run", str(path), "--output", str(out), "--no-progress", *args]
    full_env = {**os.environ, "KNOWUNDO_BENCH_CACHE": str(tmp_path / "cache"), **(env or {})}
    return subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=900)


def successes(out: Path) -> dict[str, tuple[float, float]]:
    rows = {}
    for path in sorted(out.glob("*.json")):
        record = load_record(path)
        assert record is not None and record.metrics is not None, path
        rows[path.stem] = (record.metrics.unlearn.success, record.metrics.retention.success)
    return rows


@pytest.mark.slow
def test_ray_gives_the_local_leaderboard_retries_killed_workers_and_resumes(tmp_path):
    local = run_cli(tmp_path, SPEC, tmp_path / "local")
    assert local.returncode == 0, local.stderr[-3000:]
    # every unit a Ray task; the first worker to reach its 2nd unlearning step is killed (SIGKILL) once
    env = {"KNOWUNDO_BENCH_FAULT": "unlearn_step:2", "KNOWUNDO_BENCH_FAULT_ONCE": str(tmp_path / "killed")}
    remote = run_cli(tmp_path, {**SPEC, "execution": RAY}, tmp_path / "ray", env=env)
    assert remote.returncode == 0, remote.stderr[-3000:]
    assert (tmp_path / "killed").exists()  # a worker did die mid-unit, and Ray ran the unit again
    assert successes(tmp_path / "ray") == successes(tmp_path / "local")
    for unit in ("ga@0", "ga@1", "ga_gd@0", "ga_gd@1"):
        assert f"{unit}: ok in " in remote.stderr
    # resumption: nothing is resubmitted
    again = run_cli(tmp_path, {**SPEC, "execution": RAY}, tmp_path / "ray")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "reused finished results: vanilla, ga@0, ga@1, ga_gd@0, ga_gd@1" in again.stderr
    assert ": ok in " not in again.stderr


@pytest.mark.slow
def test_a_unit_whose_worker_keeps_dying_is_recorded_failed_and_the_others_finish(tmp_path):
    spec = {**SPEC, "seeds": [0], "methods": [one_epoch("ga"), one_epoch("ga_gd", epochs=2)], "execution": RAY}
    # ga_gd's second epoch passes step 10 (ga's single epoch never does): every attempt of it dies
    result = run_cli(tmp_path, spec, tmp_path / "out", env={"KNOWUNDO_BENCH_FAULT": "unlearn_step:10"})
    assert result.returncode == 1, result.stderr[-3000:]
    failed = json.loads((tmp_path / "out" / "ga_gd@0.json").read_text())
    assert failed["status"] == "failed" and "the unit's task failed" in failed["error"]
    assert load_record(tmp_path / "out" / "ga@0.json").status == "ok"
    assert "failed methods: ga_gd@0" in result.stderr


def test_no_secret_reaches_the_ray_runtime_env(monkeypatch):
    from knowundo_bench.plugins.executors import ray as ray_executor

    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("HF_HOME", "/somewhere")
    monkeypatch.setenv("KNOWUNDO_BENCH_CACHE", "/shared/cache")
    monkeypatch.setenv("https_proxy", "http://proxy:3128")
    monkeypatch.setenv("NO_PROXY", "localhost")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nope")
    forwarded = ray_executor._forwarded_env()
    assert forwarded["HF_HOME"] == "/somewhere" and forwarded["KNOWUNDO_BENCH_CACHE"] == "/shared/cache"
    assert forwarded["https_proxy"] == "http://proxy:3128" and forwarded["NO_PROXY"] == "localhost"
    assert "HF_TOKEN" not in forwarded and "AWS_SECRET_ACCESS_KEY" not in forwarded


def test_running_units_are_counted_from_the_workers_markers(tmp_path):
    from knowundo_bench.plugin.execution import SuitePayload
    from knowundo_bench.plugins.executors import ray as ray_executor

    seen = []

    def worker(payload, labels, threads, *after):
        seen.append(ray_executor.running_units(tmp_path, {"ga@0", "ga_gd@0"}))
        return []

    payload = SuitePayload(spec={}, source="spec.yaml", overrides=(), output_dir=str(tmp_path), cache_dir=str(tmp_path))
    (tmp_path / ".running").mkdir()
    (tmp_path / ".running" / "ga_gd@0.999").touch()  # a worker killed mid-unit, its retry still to come
    ray_executor.run_marked(worker, payload, ["ga@0"], 1)
    assert seen == [2]
    assert ray_executor.running_units(tmp_path, {"ga@0", "ga_gd@0"}) == 1  # ga@0's marker went with it
    assert ray_executor.running_units(tmp_path, {"ga@0"}) == 0  # finished units never count


def test_a_record_written_before_the_worker_died_is_not_overwritten_as_failed(tmp_path):
    from knowundo_bench.core.progress import ProgressBoard
    from knowundo_bench.run.runner import Runner

    plugins = get_plugins()
    resolved = parse_spec({**SPEC, "seeds": None, "cache_dir": str(tmp_path / "cache")}, plugins)
    with ProgressBoard(console=None, enabled=False) as board:
        finished = Runner(resolved, plugins, tmp_path / "out", board).run()
        assert finished.failed == []
        suite = Runner(resolved, plugins, tmp_path / "out", board, force=True).prepare()
        suite.record_failure("ga", "the unit's task failed: WorkerCrashedError")  # its record is on disk
        assert load_record(tmp_path / "out" / "ga.json").status == "ok" and suite.outcome.failed == []
        (tmp_path / "out" / "ga_gd.json").unlink()
        suite.record_failure("ga_gd", "the unit's task failed: WorkerCrashedError")  # nothing on disk
        assert load_record(tmp_path / "out" / "ga_gd.json").status == "failed" and suite.outcome.failed == ["ga_gd"]
