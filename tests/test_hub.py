"""Tests of the ``hub`` data-source plugin, offline, on a local dataset folder in the
shape of the hub dataset ``zjunlp/KnowUnDo`` (README ``configs`` + JSON data files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from conftest import PRIVACY_DIR
from helpers import closed_port
from knowundo_bench.benchmark.pairs import Benchmark, QAPair
from knowundo_bench.core.errors import InputError
from knowundo_bench.plugins.data import hub
from knowundo_bench.plugins.data.hub import HubParams

AUTHORS = ["Isabella Marquez", "Hiro Tanaka", "Evelyn Smith"]

# The documented ``configs`` front matter of a dataset card (datasets "Manual Configuration").
README = """\
---
configs:
- config_name: privacy
  data_files:
  - split: unlearn
    path: privacy/unlearn.json
  - split: retention
    path: privacy/retention.json
---
# KnowUnDo (test copy)
"""


@pytest.fixture(autouse=True)
def _offline_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache / "datasets"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # datasets reads these once at import: patch the module constants too.
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache / "datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)


def _records(name: str, authors: list[str]) -> list[dict[str, str]]:
    if not PRIVACY_DIR.is_dir():
        pytest.fail(f"shared KnowUnDo data not found at {PRIVACY_DIR}")
    records = json.loads((PRIVACY_DIR / name).read_text(encoding="utf-8"))
    chosen = [r for r in records if any(a in r["text"] for a in authors)]
    assert chosen, (name, authors)
    return chosen


def _make_dataset(folder: Path, rows: dict[str, list[dict[str, list[dict[str, str]]]]]) -> Path:
    (folder / "privacy").mkdir(parents=True)
    (folder / "README.md").write_text(README, encoding="utf-8")
    for scope, scope_rows in rows.items():
        (folder / "privacy" / f"{scope}.json").write_text(json.dumps(scope_rows), encoding="utf-8")
    return folder


def _expected(rows: dict[str, list[dict[str, list[dict[str, str]]]]]) -> list[tuple[str, str, str, str]]:
    expected = []
    for scope in ("unlearn", "retention"):
        for row in rows[scope]:
            for split in ("train", "val"):
                expected += [(r["text"], r["labels"], scope, split) for r in row[split]]
    return expected


def _source_rows(authors: list[str]) -> dict[str, list[dict[str, list[dict[str, str]]]]]:
    return {
        scope: [{split: _records(f"{scope}_{split}.json", authors) for split in ("train", "val")}]
        for scope in ("unlearn", "retention")
    }


def test_hub_loads_local_dataset_folder(tmp_path: Path) -> None:
    rows = _source_rows(AUTHORS)
    folder = _make_dataset(tmp_path / "KnowUnDo", rows)
    pairs = hub.load(HubParams(repo=str(folder)), "privacy")

    assert all(isinstance(p, QAPair) for p in pairs)
    assert [(p.question, p.answer, p.scope, p.split) for p in pairs] == _expected(rows)

    bench = Benchmark(tuple(pairs))
    bench.check_complete(str(folder))
    assert set(bench.instances) == set(AUTHORS)
    assert all(p.instance is not None for p in pairs)
    [parents] = [p for p in pairs if p.question == "Who are Isabella Marquez's parents?"]
    assert parents.instance == "Isabella Marquez"
    for pair in pairs:
        assert pair.instance in pair.question or pair.instance in pair.answer


def test_hub_reads_every_row_of_a_scope(tmp_path: Path) -> None:
    # Several rows per scope: pairs come row by row, train before val within a row.
    first, second = _source_rows(AUTHORS[:1]), _source_rows(AUTHORS[1:2])
    rows = {scope: first[scope] + second[scope] for scope in ("unlearn", "retention")}
    folder = _make_dataset(tmp_path / "KnowUnDo", rows)
    pairs = hub.load(HubParams(repo=str(folder)), "privacy")
    assert [(p.question, p.answer, p.scope, p.split) for p in pairs] == _expected(rows)
    assert Benchmark(tuple(pairs)).instances == AUTHORS[:2]


def test_hub_bad_record_names_row_and_field(tmp_path: Path) -> None:
    rows = _source_rows(AUTHORS[:1])
    rows["retention"][0]["val"] = [{"text": "Who is Ann Lee?", "labels": ""}]
    folder = _make_dataset(tmp_path / "KnowUnDo", rows)
    with pytest.raises(InputError) as info:
        hub.load(HubParams(repo=str(folder)), "privacy")
    message = str(info.value)
    assert "\n" not in message
    assert "[privacy/retention] row 0 val" in message
    assert "labels" in message


def test_hub_missing_repo_is_one_line_input_error(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_dataset"
    with pytest.raises(InputError) as info:
        hub.load(HubParams(repo=str(missing)), "privacy")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{missing}[privacy/unlearn]: cannot load dataset")


def test_hub_params_defaults_and_registration() -> None:
    params = HubParams()
    assert params.repo == "zjunlp/KnowUnDo"
    assert params.revision is None
    with pytest.raises(ValidationError):
        HubParams(repo="x", unknown=1)
    [info] = hub.register_data_sources()
    assert info.name == "hub"
    assert info.params is HubParams
    assert info.load is hub.load


def test_hub_row_without_val_column(tmp_path: Path) -> None:
    rows = _source_rows(AUTHORS[:1])
    # All splits of a config share one schema, so drop ``val`` from both scopes.
    rows = {scope: [{"train": scope_rows[0]["train"]}] for scope, scope_rows in rows.items()}
    folder = _make_dataset(tmp_path / "KnowUnDo", rows)
    with pytest.raises(InputError, match=r"\[privacy/unlearn\]: row 0 has no 'val' column"):
        hub.load(HubParams(repo=str(folder)), "privacy")


def test_hub_unknown_domain_is_input_error(tmp_path: Path) -> None:
    folder = _make_dataset(tmp_path / "KnowUnDo", _source_rows(AUTHORS[:1]))
    with pytest.raises(InputError) as info:
        hub.load(HubParams(repo=str(folder)), "copyright")
    assert "\n" not in str(info.value)
    assert "[copyright/unlearn]: cannot load dataset" in str(info.value)


def test_a_hub_dataset_with_the_hub_unreachable_is_one_line_at_once(monkeypatch) -> None:
    port = closed_port()
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(InputError, match=r"^data\.repo: the Hugging Face hub is not reachable \(127\.0\.0\.1:\d+: "):
        hub.load(HubParams(repo="zjunlp/KnowUnDo"), "privacy")
