"""What a reader sees in the table (issue 31): intervals that stay within 0-100, a
collapsed model flagged in every view, the gap to the retrain oracle, a compact table on a
terminal, and a spec's Hugging Face spellings answered with this harness's names."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from knowundo_bench.api import MethodInfo, TrainingParams, answer_loss, hookimpl
from knowundo_bench.cli import app
from knowundo_bench.evaluate.collapse import collapse_reading, degenerate
from knowundo_bench.leaderboard import leaderboard_rows, render, terminal
from knowundo_bench.leaderboard.aggregate import value_bounds
from knowundo_bench.records.files import write_record
from knowundo_bench.testing import run_spec, tiny_spec

SEEDS = (100.0, 100.0, 95.1)  # mean 98.37: a plain t-interval over three seeds reaches past 100


def scope(success: float) -> dict:
    return {"success": success, "ppl": 2.0, "rouge_l": 50.0}


def write_seeds(folder, method: str, order: int, unlearn: tuple[float, ...], retention: tuple[float, ...], **extra):
    for seed, (u, r) in enumerate(zip(unlearn, retention, strict=True)):
        body = {
            "method": method,
            "unit": f"{method}@{seed}",
            "seed": seed,
            "order": order,
            "status": "ok",
            "metrics": {"unlearn": scope(u), "retention": scope(r), "avg_success": (u + r) / 2},
            **extra,
        }
        write_record(folder, f"{method}@{seed}", body)


def test_every_interval_of_a_percentage_stays_within_0_and_100_in_every_view(tmp_path):
    write_seeds(tmp_path, "ga", 1, SEEDS, (0.0, 4.9, 0.0))
    [row] = leaderboard_rows(tmp_path)
    low, high = row["unlearn_success_ci95"]
    assert row["unlearn_success"] == pytest.approx(98.3667, abs=1e-3)
    assert 0 <= low < row["unlearn_success"] and high == 100.0
    raw = row["ci95_unclipped"]["unlearn_success"]
    assert raw[0] == pytest.approx(low) and raw[1] > 100  # the raw t ends, kept beside
    assert row["retention_success_ci95"][0] == 0.0 and row["ci95_unclipped"]["retention_success"][0] < 0
    for rows in (json.loads(render([row], "json")), list(csv.DictReader(io.StringIO(render([row], "csv"))))):
        for key, value in rows[0].items():
            if key.endswith("_ci95") and value and value_bounds(key.removesuffix("_ci95")) == (0.0, 100.0):
                ends = json.loads(value) if isinstance(value, str) else value
                assert all(0.0 <= end <= 100.0 for end in ends), (key, ends)
    markdown = render([row], "md")
    assert f"98.37 [{low:.2f}, 100.00]" in markdown  # not "98.37 ± 5.68": the ends, as held
    assert "held within 0-100" in markdown


def test_an_interval_inside_the_bounds_is_left_as_it_is(tmp_path):
    write_seeds(tmp_path, "ga", 1, (60.0, 70.0, 80.0), (50.0, 50.0, 50.0))
    [row] = leaderboard_rows(tmp_path)
    assert row["ci95_unclipped"] is None
    low, high = row["unlearn_success_ci95"]
    assert (low + high) / 2 == pytest.approx(70.0) and low < 50 and high > 90
    assert f"70.00 ± {(high - low) / 2:.2f}" in render([row], "md")
    assert "×/÷" in render([row], "md")  # perplexities: the geometric interval's factor


def test_degenerate_answers_and_the_collapse_reading():
    assert degenerate("") and degenerate("   ") and degenerate("!!!!!") and degenerate("the the the")
    assert degenerate("a b a b a b a b") and not degenerate("1958") and not degenerate("Ada lives at 3 Elm Road.")
    assert collapse_reading([]) is None
    broken = collapse_reading(["", "x x x", "Paris is the capital", "", "", "", "", "", "", ""])
    assert broken.collapsed and broken.degenerate_share == 90.0
    same = collapse_reading(["It is a secret."] * 9 + ["Ada was born in 1958."])
    assert same.collapsed and same.same_answer_share == 90.0 and same.degenerate_share == 0.0
    healthy = collapse_reading([f"Author {i} writes poems about {i * 7}." for i in range(10)])
    assert not healthy.collapsed and healthy.distinct_2 > 50
    assert not collapse_reading(["", "", ""]).collapsed  # three answers say little about a model


class Collapse:
    """A method that breaks the model: with the final norm's weight at zero every logit is
    0 and greedy decoding repeats one token (or ends at once)."""

    @hookimpl
    def register_methods(self):
        return [MethodInfo(name="collapse", description="Zero the final norm (a test).", params=TrainingParams)]

    @hookimpl
    def unlearn(self, method, model, forget, retain, context):
        if method.name != "collapse":
            return None
        report = context.train(
            model, objective=lambda m, batch: 0.0 * answer_loss(m, batch["forget"]), params=method.params, forget=forget
        )
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name.endswith("norm.weight") and ".layers." not in name:
                    parameter.zero_()
        return report


def test_a_planted_collapsed_unit_is_flagged_in_the_table_csv_and_json(tmp_path):
    # a vanilla model trained until it answers (the kit's 3-epoch one still answers nothing: collapsed too)
    model = {"source": "tiny", "device": "cpu", "hidden_size": 64, "num_layers": 1, "num_heads": 2, "vocab_size": 400}
    spec = tiny_spec(
        "ga",
        "collapse",
        workdir=tmp_path,
        model=model,
        vanilla={"epochs": 60, "lr": 1e-2, "batch_size": 16, "grad_accum": 1},
        eval={"batch_size": 32, "max_new_tokens": 8},
    )
    outcome = run_spec(spec, tmp_path / "results", Collapse())
    assert not outcome.failed
    rows = {row["method"]: row for row in leaderboard_rows(tmp_path / "results")}
    assert rows["collapse"]["collapsed"] is True and rows["collapse"]["degenerate_share"] >= 90
    assert rows["vanilla"]["collapsed"] is False and rows["ga"]["collapsed"] is not None
    table = render(list(rows.values()), "md")
    assert "| collapse (collapsed) |" in table and "| vanilla |" in table
    assert "collapsed: the model's greedy answers are degenerate" in table
    [collapsed_csv] = [
        r for r in csv.DictReader(io.StringIO(render(list(rows.values()), "csv"))) if r["method"] == "collapse"
    ]
    assert collapsed_csv["collapsed"] == "True"
    [collapsed_json] = [r for r in json.loads(render(list(rows.values()), "json")) if r["method"] == "collapse"]
    assert collapsed_json["collapsed"] is True
    record = json.loads((tmp_path / "results" / "collapse.json").read_text())
    assert record["metrics"]["collapse"]["collapsed"] is True and record["metrics"]["collapse"]["answers"] > 0
    console = Console(file=io.StringIO(), width=100)
    terminal.print_leaderboard(list(rows.values()), "knowundo-bench leaderboard results --format md", console)
    assert "collapse (collapsed)" in console.file.getvalue()


def test_the_gap_to_the_retrain_oracle_is_shown_when_the_run_has_one(tmp_path):
    write_seeds(tmp_path, "vanilla", 0, (0.0,), (100.0,))
    write_seeds(tmp_path, "retrain", 1, (80.0,), (96.0,), oracle=True)
    write_seeds(tmp_path, "ga", 2, (99.0,), (10.0,))
    rows = {row["method"]: row for row in leaderboard_rows(tmp_path)}
    assert rows["retrain"]["oracle_gap"] == 0.0
    assert rows["ga"]["oracle_gap"] == pytest.approx((19.0 + 86.0) / 2)
    assert rows["vanilla"]["oracle_gap"] == pytest.approx((80.0 + 4.0) / 2)
    table = render(list(rows.values()), "md")
    assert "| Avg Succ↑ | gap to oracle↓ |" in table and "| 52.50 |" in table
    assert "gap to oracle: the mean absolute difference" in table
    empty = tmp_path / "no-oracle"
    write_seeds(empty, "ga", 1, (99.0,), (10.0,))
    assert "oracle_gap" not in leaderboard_rows(empty)[0] and "oracle" not in render(leaderboard_rows(empty), "md")


def test_a_terminal_gets_a_compact_table_and_a_pipe_the_full_markdown(tmp_path, monkeypatch):
    for order, method in enumerate(("ga", "ga_gd", "memflex"), start=1):
        write_seeds(tmp_path, method, order, SEEDS, (90.0, 80.0, 85.0))
    rows = leaderboard_rows(tmp_path)
    console = Console(file=io.StringIO(), width=100)
    terminal.print_leaderboard(rows, f"knowundo-bench leaderboard {tmp_path} --format md", console)
    text = console.file.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "Unlearn↑" in text and "Avg↑" in text and "memflex" in text and "98.4 [" in text
    assert "PPL" not in text and "ROUGE" not in text  # the decisive columns only
    assert "--format md" in text
    monkeypatch.setattr(terminal, "stdout_is_terminal", lambda: True)
    shown = CliRunner().invoke(app, ["leaderboard", str(tmp_path)])
    assert shown.exit_code == 0 and "Unlearn↑" in shown.stdout and "| Method |" not in shown.stdout
    explicit = CliRunner().invoke(app, ["leaderboard", str(tmp_path), "--format", "md"])
    assert explicit.stdout.startswith("| Method | Unlearn Succ↑")
    monkeypatch.setattr(terminal, "stdout_is_terminal", lambda: False)
    piped = CliRunner().invoke(app, ["leaderboard", str(tmp_path)])
    assert piped.stdout == explicit.stdout


def test_value_bounds_know_each_kind_of_number():
    assert value_bounds("unlearn_success") == (0.0, 100.0) and value_bounds("retention_success@careful") == (0, 100)
    assert value_bounds("mmlu") == (0.0, 100.0) and value_bounds("mia_auc_mink") == (0.0, 1.0)
    assert value_bounds("recovery@quantize") == (-100.0, 100.0)
    assert value_bounds("unlearn_ppl") is None and value_bounds("privleak") is None
    assert not math.isnan(value_bounds("avg_success")[1])
