"""Issue 13: every number traceable (run identity, reuse keys with plugin versions, one
spec per directory, seeds from labels, vanilla target flag) and statistically honest
(seeds with 95% intervals, paired comparisons, several runs in one table, samples)."""

from __future__ import annotations

import json
import math
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from helpers import TINY_SPEC, error_lines, one_epoch, table_row_names
from knowundo_bench.cli import app
from knowundo_bench.core.errors import InputError
from knowundo_bench.leaderboard import leaderboard_rows
from knowundo_bench.leaderboard.stats import PairScores, paired_difference, t_interval
from knowundo_bench.records.files import load_record
from knowundo_bench.run.identity import derived_seed
from knowundo_bench.testing import run_spec
from test_plugins import THIRD_PARTY, cli

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def spec_with(tmp_path, *methods, **overrides) -> dict:
    return {**TINY_SPEC, "cache_dir": str(tmp_path / "cache"), "methods": list(methods), **overrides}


def run_cli(tmp_path, spec: dict, *arguments: str, name: str = "spec.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return runner.invoke(app, ["run", str(path), "--no-progress", *arguments])


def metrics_of(directory) -> dict[str, dict]:
    return {
        path.stem: (record.metrics.model_dump(), record.method_seed, record.training.step_losses)
        for path in sorted(directory.glob("*.json"))
        if (record := load_record(path)) is not None and record.method != "vanilla"
    }


@pytest.mark.slow
def test_seeds_come_from_labels_so_order_and_additions_change_nothing(tmp_path):
    forward = spec_with(tmp_path, one_epoch("ga"), one_epoch("ga_gd"), seeds=[0, 1])
    backward = spec_with(tmp_path, one_epoch("ga_gd"), one_epoch("ga"), seeds=[0, 1])
    more = spec_with(tmp_path, one_epoch("npo"), one_epoch("ga_gd"), one_epoch("ga"), seeds=[0, 1])
    outcomes = [run_spec(spec, tmp_path / name) for spec, name in ((forward, "f"), (backward, "b"), (more, "m"))]
    assert all(outcome.failed == [] for outcome in outcomes)
    first, second, third = (metrics_of(tmp_path / name) for name in ("f", "b", "m"))
    assert set(first) == {"ga@0", "ga@1", "ga_gd@0", "ga_gd@1"}
    assert first == second
    assert {unit: third[unit] for unit in first} == first
    assert first["ga@0"][0] != first["ga@1"][0]  # the seeds do differ
    assert first["ga@1"][1] == derived_seed(1, "ga")


@pytest.mark.slow
def test_three_seeds_give_means_with_intervals_and_samples(tmp_path):
    spec = spec_with(tmp_path, one_epoch("ga"), one_epoch("ga_gd"), seeds=[0, 1, 2])
    result = run_cli(tmp_path, spec, "--output", str(tmp_path / "out"), "--log-samples")
    assert result.exit_code == 0, result.output
    rows = {row["method"]: row for row in leaderboard_rows(tmp_path / "out")}
    for method in ("ga", "ga_gd"):
        row = rows[method]
        assert row["n_seeds"] == 3 and row["seeds"] == [0, 1, 2]
        for key in ("unlearn_success", "retention_success", "avg_success"):
            low, high = row[f"{key}_ci95"]
            assert low <= row[key] <= high
        assert row["run"] == "tiny" and row["model"] == "tiny" and row["data"].startswith("synthetic:")
    assert rows["ga_gd"]["avg_success_not_below_best"] is True  # the best row
    assert rows["vanilla"]["n_seeds"] == 1
    per_seed = leaderboard_rows(tmp_path / "out", per_seed=True)
    assert [row["unit"] for row in per_seed][1:4] == ["ga@0", "ga@1", "ga@2"]
    assert rows["ga"]["avg_success"] == pytest.approx(
        sum(r["avg_success"] for r in per_seed if r["method"] == "ga") / 3
    )
    markdown = result.stdout
    assert "±" in markdown and "Student-t interval over seeds" in markdown and "bootstrap" in markdown

    record = load_record(tmp_path / "out" / "ga@1.json")
    n_val = len(record.metrics.raw["unlearn"]["example_accuracy"]) + len(
        record.metrics.raw["retention"]["example_accuracy"]
    )
    for unit in ("vanilla", "ga@0", "ga@1", "ga@2", "ga_gd@0", "ga_gd@1", "ga_gd@2"):
        lines = (tmp_path / "out" / "samples" / f"{unit}.jsonl").read_text().splitlines()
        assert len(lines) == n_val, unit
    sample = json.loads(lines[0])
    assert {"scope", "question", "reference", "plain", "prefixes"} <= set(sample)
    assert {"generation", "token_accuracy", "answer_nll"} == set(sample["plain"])
    assert set(sample["prefixes"]) == {"helpful_assistant"}
    shown = runner.invoke(
        app, ["samples", str(tmp_path / "out"), "--method", "ga", "--limit", "2"], env={"COLUMNS": "200"}
    )
    assert shown.exit_code == 0 and sample_question_in(shown.stdout, tmp_path / "out" / "samples" / "ga@0.jsonl")

    identity = record.identity
    assert identity.spec_name == "tiny" and identity.seed == 1 and identity.model == "tiny"
    assert identity.method_plugin.startswith("knowundo-bench ") and identity.localizer_plugin is None
    assert identity.data_source == "synthetic" and len(identity.spec_hash) == 16


def sample_question_in(output: str, path) -> bool:
    first = json.loads(path.read_text().splitlines()[0])
    return first["question"].split()[0] in output and "vanilla" in output


@pytest.mark.slow
def test_an_output_directory_belongs_to_one_spec(tmp_path):
    out = str(tmp_path / "out")
    assert run_cli(tmp_path, spec_with(tmp_path, one_epoch("ga"), one_epoch("ga_gd")), "--output", out).exit_code == 0
    # the same spec without ga_gd: its old record moves aside instead of joining the table
    fewer = run_cli(tmp_path, spec_with(tmp_path, one_epoch("ga")), "--output", out)
    assert fewer.exit_code == 0
    assert "moved 1 records of units this spec no longer has" in fewer.stdout + fewer.stderr
    assert (tmp_path / "out" / "superseded" / "ga_gd.json").is_file()
    assert [row["method"] for row in leaderboard_rows(tmp_path / "out")] == ["vanilla", "ga"]
    other = spec_with(tmp_path, one_epoch("ga"), name="other")
    refused = run_cli(tmp_path, other, "--output", out, name="other.yaml")
    assert refused.exit_code == 2
    message = error_lines(refused.stderr)
    assert "\n" not in message and "'tiny'" in message and "'other'" in message and "--force" in message
    forced = run_cli(tmp_path, other, "--output", out, "--force", name="other.yaml")
    assert forced.exit_code == 0, forced.output
    assert {load_record(p).run for p in (tmp_path / "out").glob("*.json")} == {"other"}


@pytest.mark.slow
def test_a_vanilla_model_that_misses_its_target_is_flagged(tmp_path):
    spec = spec_with(tmp_path, one_epoch("ga"), vanilla={**TINY_SPEC["vanilla"], "epochs": 1, "target_accuracy": 99.9})
    result = run_cli(tmp_path, spec, "--output", str(tmp_path / "out"))
    assert result.exit_code == 3
    *_, last = result.stderr.strip().splitlines()
    assert last.startswith("error: ") and "missed vanilla.target_accuracy" in last
    assert (
        "vanilla (target missed)" in table_row_names(result.stdout)
        and "target missed: the vanilla model" in result.stdout
    )
    vanilla = load_record(tmp_path / "out" / "vanilla.json").vanilla
    assert vanilla.target_met is False and vanilla.accuracy < 99.9 and vanilla.target_accuracy == 99.9
    lenient = {**spec, "vanilla": {**spec["vanilla"], "require_target": False}}
    again = run_cli(tmp_path, lenient, "--output", str(tmp_path / "out2"))
    assert again.exit_code == 0 and "(target missed)" in again.stdout


@pytest.mark.slow
def test_a_plugin_version_change_recomputes_its_units(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "knowundo_extra_method.py").write_text(textwrap.dedent(THIRD_PARTY))

    def install(version: str) -> None:
        for old in site.glob("*.dist-info"):
            shutil.rmtree(old)
        dist = site / f"knowundo_extra-{version}.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: knowundo-extra\nVersion: {version}\n")
        (dist / "entry_points.txt").write_text("[knowundo_bench]\nscaled_ga = knowundo_extra_method\n")

    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec_with(tmp_path, one_epoch("scaled_ga"), one_epoch("ga"))))
    command = ["run", "spec.yaml", "--output", "out", "--no-progress"]
    install("0.3.1")
    assert cli(command, site, tmp_path).returncode == 0
    before = load_record(tmp_path / "out" / "scaled_ga.json")
    assert before.identity.method_plugin == "knowundo-extra 0.3.1"
    same = cli(command, site, tmp_path)
    assert "reused finished results: vanilla, scaled_ga, ga" in same.stdout + same.stderr
    install("0.3.2")
    changed = cli(command, site, tmp_path)
    assert changed.returncode == 0, changed.stderr
    log = changed.stdout + changed.stderr
    assert "recomputing scaled_ga: method plugin knowundo-extra 0.3.1 -> knowundo-extra 0.3.2" in log
    assert "reused finished results: vanilla, ga" in log
    after = load_record(tmp_path / "out" / "scaled_ga.json")
    assert after.identity.method_plugin == "knowundo-extra 0.3.2" and after.unit_key != before.unit_key


@pytest.mark.slow
def test_compare_puts_two_runs_in_one_table_with_differences(tmp_path):
    for name, lr in (("one", 1e-3), ("two", 3e-3)):
        spec = spec_with(tmp_path, one_epoch("ga_gd", lr=lr), name=name, seeds=[0, 1])
        assert run_spec(spec, tmp_path / name).failed == []
    result = runner.invoke(app, ["compare", str(tmp_path / "one"), str(tmp_path / "two")])
    assert result.exit_code == 0, result.output
    assert (
        "| Run | Method |" in result.stdout
        and "one | ga_gd" in table_row_names(result.stdout)
        and "two | ga_gd" in table_row_names(result.stdout)
    )
    assert "Δ Avg Succ" in result.stdout and "unpaired: each run's seed variance" in result.stdout
    payload = json.loads(
        runner.invoke(app, ["compare", str(tmp_path / "one"), str(tmp_path / "two"), "-f", "json"]).stdout
    )
    (difference,) = payload["differences"]
    low, high = difference["avg_success_difference_ci95"]
    assert low <= difference["avg_success_difference"] <= high
    assert {row["run"] for row in payload["rows"]} == {"one", "two"}
    assert all({"run", "model", "data", "seeds"} <= set(row) for row in payload["rows"])
    plots = runner.invoke(
        app,
        [
            "plot",
            str(tmp_path / "one"),
            str(tmp_path / "two"),
            "-o",
            str(tmp_path / "p"),
            "--format",
            "svg",
            "--dpi",
            "72",
        ],
    )
    assert plots.exit_code == 0, plots.output
    assert (tmp_path / "p" / "success.svg").read_text().startswith("<?xml")


def test_t_interval_matches_the_textbook():
    mean, (low, high) = t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and high - mean == pytest.approx(4.302652729911275 / math.sqrt(3))  # t(0.975, 2) s/sqrt(n)
    assert t_interval([5.0]) == (5.0, None)
    assert t_interval([1.0, math.inf])[1] is None


def test_the_paired_bootstrap_separates_a_shift_from_noise():
    import numpy

    rng = numpy.random.default_rng(3)
    base = PairScores({s: rng.uniform(0, 100, 40) for s in range(3)}, {s: rng.uniform(0, 100, 40) for s in range(3)})
    better = PairScores({s: base.unlearn[s] - 4 for s in range(3)}, base.retention)  # +2 Avg Success on every pair
    difference, (low, high) = paired_difference(better, base)
    assert difference == pytest.approx(2.0) and low > 0
    noisy = PairScores({s: rng.uniform(0, 100, 40) for s in range(3)}, {s: rng.uniform(0, 100, 40) for s in range(3)})
    _, (low, high) = paired_difference(noisy, base)
    assert low < 0 < high  # unrelated noise of equal level: not significant
    # Few seeds: per-seed differences 0.5, 2 and 3.5 (no pair noise) are not significant; the
    # interval is the t-interval over seeds, (-1.73, 5.73), wider than the seeds' own range.
    shifts = dict(zip(range(3), (0.5, 2.0, 3.5), strict=True))
    spread = PairScores({s: base.unlearn[s] + 2 * d for s, d in shifts.items()}, base.retention)
    difference, (low, high) = paired_difference(base, spread)
    assert difference == pytest.approx(2.0) and low == pytest.approx(-1.7265, abs=1e-3) and high > 5.7


def test_units_follow_seeds_method_overrides_and_per_seed_vanilla():
    from knowundo_bench.plugin.manager import Plugins, make_plugin_manager
    from knowundo_bench.run.plan import plan_units
    from knowundo_bench.run.resolution import parse_spec

    plugins = Plugins(make_plugin_manager(load_entry_points=False))

    def labels(**overrides) -> list[tuple[str, int, int]]:
        spec = {**TINY_SPEC, "seed": 7, "methods": [{"name": "ga"}, {"name": "ga_gd", "seeds": [5]}], **overrides}
        return [(u.label, u.run_seed, u.vanilla_seed) for u in plan_units(parse_spec(spec, plugins))]

    assert labels() == [("vanilla", 7, 7), ("ga", 7, 7), ("ga_gd@5", 5, 7)]
    assert labels(seeds=[0, 1]) == [("vanilla", 7, 7), ("ga@0", 0, 7), ("ga@1", 1, 7), ("ga_gd@5", 5, 7)]
    per_seed = labels(seeds=[0, 1], vanilla={"per_seed": True})
    assert per_seed == [
        ("vanilla@0", 0, 0),
        ("vanilla@1", 1, 1),
        ("vanilla@5", 5, 5),
        ("ga@0", 0, 0),
        ("ga@1", 1, 1),
        ("ga_gd@5", 5, 5),
    ]
    # per_seed without spec seeds: the method without seeds still gets its vanilla model (seed 7)
    assert labels(vanilla={"per_seed": True}) == [
        ("vanilla@5", 5, 5),
        ("vanilla@7", 7, 7),
        ("ga", 7, 7),
        ("ga_gd@5", 5, 5),
    ]

    def starts(methods: list[dict], **overrides) -> list[tuple[str, str]]:
        spec = {**TINY_SPEC, "seed": 7, "methods": methods, **overrides}
        return [(u.label, u.start) for u in plan_units(parse_spec(spec, plugins))]

    # a method's own vanilla settings: its own vanilla unit (per seed too), shared by equal settings
    own = [
        {"name": "ga"},
        {"name": "ga_gd", "seeds": [5], "vanilla": {"epochs": 9}},
        {"name": "npo", "vanilla": {"epochs": 9}},
    ]
    assert starts(own) == [
        ("vanilla", "vanilla"),
        ("vanilla-ga_gd", "vanilla-ga_gd"),
        ("ga", "vanilla"),
        ("ga_gd@5", "vanilla-ga_gd"),
        ("npo", "vanilla-ga_gd"),
    ]
    assert starts(own, vanilla={"per_seed": True}) == [
        ("vanilla@5", "vanilla@5"),
        ("vanilla@7", "vanilla@7"),
        ("vanilla-ga_gd@5", "vanilla-ga_gd@5"),
        ("vanilla-ga_gd@7", "vanilla-ga_gd@7"),
        ("ga", "vanilla@7"),
        ("ga_gd@5", "vanilla-ga_gd@5"),
        ("npo", "vanilla-ga_gd@7"),
    ]
    with pytest.raises(InputError, match="'vanilla-ga' names ga's own vanilla model"):
        starts([{"name": "ga", "vanilla": {"epochs": 9}}, {"name": "npo", "label": "vanilla-ga"}])


def test_records_name_the_harness_commit_when_run_from_a_checkout():
    import re

    from knowundo_bench.run.identity import harness_commit

    commit = harness_commit()
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", commit)
    if (ROOT / ".git").exists():
        assert commit is not None
