"""`knowundo-bench export`: the leaderboard as a Hugging Face dataset folder that
`datasets` loads back with the same numbers, and as a per-seed CSV/JSON table (issue 29)."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
import shutil
from pathlib import Path

import datasets
import pytest
import yaml
from typer.testing import CliRunner

from knowundo_bench.cli import app

SCHEMA1 = Path(__file__).parent / "fixtures" / "records-schema1"


@pytest.fixture
def results(tmp_path) -> Path:
    """The quickstart's records, a diverged one ("inf" perplexity) and a failed one."""
    folder = tmp_path / "results"
    shutil.copytree(SCHEMA1, folder, ignore=shutil.ignore_patterns("*.expected"))
    return folder


def cli(*arguments):
    return CliRunner().invoke(app, [str(a) for a in arguments])


def json_rows(*arguments) -> list[dict]:
    result = cli("leaderboard", *arguments, "-f", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if a == "inf" and b == math.inf:  # JSON spells a non-finite float as a string
        return True
    return a == b


def test_hf_dataset_round_trips_through_datasets(results, tmp_path):
    output = tmp_path / "export"
    result = cli("export", results, "--format", "hf-dataset", "--output", output)
    assert result.exit_code == 0, result.output
    assert "per_seed 6 rows" in result.stdout
    loaded = datasets.load_dataset("parquet", data_dir=str(output), cache_dir=str(tmp_path / "cache"))
    assert set(loaded) == {"per_seed", "aggregated"}
    for split, extra in (("per_seed", ["--per-seed"]), ("aggregated", [])):
        expected = json_rows(results, *extra)
        got = loaded[split].to_list()
        assert len(got) == len(expected) > 0
        for want, row in zip(expected, got, strict=True):
            for key in ("method", "unlearn_success", "retention_success", "avg_success", "status"):
                assert same(want[key], row[key]), (split, key, want[key], row[key])
    assert any(row["status"] == "ok" and row["unlearn_success"] > 0 for row in loaded["per_seed"].to_list())


def test_dataset_card_names_the_splits_and_the_run(results, tmp_path):
    output = tmp_path / "export"
    assert cli("export", results, "-o", output).exit_code == 0
    card = (output / "README.md").read_text()
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    files = {entry["split"]: entry["path"] for entry in meta["configs"][0]["data_files"]}
    assert files == {"per_seed": "data/per_seed-*.parquet", "aggregated": "data/aggregated-*.parquet"}
    for pattern in files.values():
        assert len(list(output.glob(pattern))) == 1
    run = meta["knowundo_bench"]["runs"][0]
    assert run["folder"] == "results" and run["spec"]["name"] == "quickstart"
    assert "Unlearn Success" in body and "Student-t" in body and "| ga_gd |" in body


def test_export_never_replaces_a_folder(results, tmp_path):
    output = tmp_path / "taken"
    output.mkdir()
    (output / "mine.txt").write_text("keep")
    result = cli("export", results, "-o", output)
    assert result.exit_code == 2 and "--output" in result.output and "nothing replaced" in result.output
    assert [p.name for p in output.iterdir()] == ["mine.txt"]


def test_export_of_a_folder_without_records_is_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("export", empty, "-o", tmp_path / "out")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_per_seed_table_as_csv_or_json(results, tmp_path, fmt):
    output = tmp_path / f"table.{fmt}"
    assert cli("export", results, "-f", fmt, "-o", output).exit_code == 0
    expected = json_rows(results, "--per-seed")
    text = output.read_text()
    rows = list(csv.DictReader(io.StringIO(text))) if fmt == "csv" else json.loads(text)
    assert [row["method"] for row in rows] == [row["method"] for row in expected]
    ga = next(row for row in rows if row["method"] == "ga")
    want = next(row for row in expected if row["method"] == "ga")
    assert float(ga["unlearn_success"]) == pytest.approx(want["unlearn_success"], rel=1e-12)


def test_report_is_one_self_contained_page(results, tmp_path):
    """Inline CSS and images, no script and nothing fetched: it opens offline; the
    leaderboard (with its marks), the plots, the efficiency view and the run are on it."""
    output = tmp_path / "report.html"
    result = cli("report", results, "-o", output)
    assert result.exit_code == 0, result.output
    page = output.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page, re.I)
    assert "@import" not in page and "url(" not in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) >= 1 and all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for data in images)
    assert "<h2>Leaderboard</h2>" in page and "<td>ga_gd</td>" in page and "<h2>Efficiency (Table 5)</h2>" in page
    assert "quickstart" in page.split("<h2>Runs</h2>")[1]


def test_report_escapes_what_a_record_says(results, tmp_path):
    """A results folder may be someone else's: a label holding markup stays text."""
    record = json.loads((results / "ga.json").read_text())
    record["method"] = "<img src=x onerror=alert(1)>"
    (results / "ga.json").write_text(json.dumps(record))
    output = tmp_path / "report.html"
    assert cli("report", results, "-o", output).exit_code == 0
    page = output.read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
