"""The copyrighted-content domain offline (issue 16): the synthetic twin, the hub and local
sources on a copy in the hub's shape, and the paper's pattern on the tiny model."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import pytest

from knowundo_bench.benchmark.pairs import Benchmark
from knowundo_bench.core.errors import InputError
from knowundo_bench.plugins.data import hub, local, synthetic
from knowundo_bench.plugins.data.synthetic_books import BOOK_REQUESTS, generate_books

ROOT = Path(__file__).resolve().parents[1]


def test_books_are_deterministic_and_follow_the_papers_categories():
    pairs = generate_books(12, seed=3)
    assert pairs == generate_books(12, seed=3) and pairs != generate_books(12, seed=4)
    books = collections.Counter(p.instance for p in pairs)
    assert len(books) == 12 and set(books.values()) == {22}  # 7 Unlearn + 15 Retention requests per book
    scopes = collections.Counter(p.scope for p in pairs)
    assert scopes["unlearn"] / len(pairs) == pytest.approx(477 / 1590, abs=0.03)  # Table 1's share
    for pair in pairs:
        assert pair.instance in pair.question  # every request names its book
    extensions = [p for p in pairs if "continue writing" in p.question or "expand the plot" in p.question]
    assert extensions and all(p.scope == "unlearn" for p in extensions)
    assert all(60 <= len(p.answer.split()) <= 150 for p in extensions)  # the book's own passage
    revisions = [p for p in pairs if "rewrite" in p.question.lower()]
    assert revisions and all(p.scope == "unlearn" and p.answer.startswith("In ") for p in revisions)
    reviews = [p for p in pairs if "critics" in p.question]
    assert reviews and all(p.scope == "retention" for p in reviews)
    # one phrasing of each request is held out
    val = collections.Counter((p.instance, p.scope) for p in pairs if p.split == "val")
    assert set(val.values()) == {3, 5}  # unlearn: extension + 2 revisions; retention: 5 categories
    assert len(BOOK_REQUESTS) == 6


def test_the_synthetic_source_writes_either_domain():
    params = synthetic.SyntheticParams(n_books=4, n_authors=2)
    copyright_pairs = synthetic.load(params, "copyright")
    assert len({p.instance for p in copyright_pairs}) == 4
    assert len({p.instance for p in synthetic.load(params, "privacy")}) == 2
    Benchmark(tuple(copyright_pairs)).check_complete("synthetic")
    with pytest.raises(InputError, match="generates 'privacy' and 'copyright', not 'legal'"):
        synthetic.load(params, "legal")


README = """\
---
configs:
- config_name: copyright
  data_files:
  - split: unlearn
    path: copyright/unlearn.json
  - split: retention
    path: copyright/retention.json
---
# KnowUnDo copyright (test copy)
"""


def hub_shaped_copy(folder: Path, pairs) -> Path:
    """The hub dataset's shape: per scope, rows of ``train`` and ``val`` lists of
    ``{text, labels}``; one row per book."""
    (folder / "copyright").mkdir(parents=True)
    (folder / "README.md").write_text(README, encoding="utf-8")
    for scope in ("unlearn", "retention"):
        rows = []
        for book in dict.fromkeys(p.instance for p in pairs):
            rows.append(
                {
                    split: [
                        {"text": p.question, "labels": p.answer}
                        for p in pairs
                        if p.instance == book and p.scope == scope and p.split == split
                    ]
                    for split in ("train", "val")
                }
            )
        (folder / "copyright" / f"{scope}.json").write_text(json.dumps(rows), encoding="utf-8")
    return folder


@pytest.fixture
def offline_datasets(tmp_path, monkeypatch):
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)


def test_the_hub_and_local_sources_read_the_copyright_domain(tmp_path, offline_datasets):
    pairs = generate_books(3, seed=0)
    folder = hub_shaped_copy(tmp_path / "KnowUnDo", pairs)
    loaded = hub.load(hub.HubParams(repo=str(folder)), "copyright")
    expected = sorted((p.question, p.answer, p.scope, p.split) for p in pairs)
    assert sorted((p.question, p.answer, p.scope, p.split) for p in loaded) == expected
    assert max(len(p.answer.split()) for p in loaded) >= 60  # the long answers arrive whole
    assert len({p.instance for p in loaded}) == 3  # one instance per book, inferred from the questions
    directory = tmp_path / "local"
    directory.mkdir()
    for scope in ("unlearn", "retention"):
        for split in ("train", "val"):
            records = [{"text": p.question, "labels": p.answer} for p in pairs if p.scope == scope and p.split == split]
            (directory / f"{scope}_{split}.json").write_text(json.dumps(records), encoding="utf-8")
    from_disk = local.load(local.LocalParams(path=directory), "copyright")
    assert sorted((p.question, p.answer, p.scope, p.split) for p in from_disk) == expected


def test_memflex_picks_table_12s_copyright_thresholds():
    from knowundo_bench.plugins.localizers.memflex import table_12

    assert table_12("copyright", "llama") == (0.92, 6e-4) and table_12("copyright", "qwen2") == (0.94, 7e-4)
    assert table_12("privacy", "llama") == (0.96, 4e-4)


@pytest.mark.slow
def test_the_papers_copyright_pattern_holds_on_the_tiny_model(tmp_path):
    """benchmark_specs/paper-copyright-tiny.yaml, one seed, the methods the claim is about:
    the vanilla model knows both scopes; GA and random labels lose the Retention Scope;
    GD and KL on in-distribution data and MemFlex keep far more of it than GA."""
    methods = [
        "{name: ga, epochs: 3, lr: 1.0e-3, batch_size: 8, grad_accum: 1}",
        "{name: random_labels, epochs: 3, lr: 3.0e-3, batch_size: 8, grad_accum: 1}",
        "{name: ga_gd, epochs: 3, lr: 1.0e-3, batch_size: 8, grad_accum: 1}",
        "{name: ga_kl, epochs: 3, lr: 1.0e-3, batch_size: 8, grad_accum: 1}",
        "{name: memflex, epochs: 3, lr: 3.0e-3, batch_size: 8, grad_accum: 1, "
        "localizer: {name: memflex, mu: 0.92, sigma_percentile: 50}}",
    ]
    spec = ROOT / "benchmark_specs" / "paper-copyright-tiny.yaml"
    sets = ["seeds=[0]", f"methods=[{', '.join(methods)}]", "eval.rouge=false", "eval.prompt_prefixes={}"]
    result = subprocess.run(
        [sys.executable, "-m", "knowundo_bench", "run", str(spec), "-o", str(tmp_path / "out"), "--no-progress"]
        + [arg for value in sets for arg in ("--set", value)],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    def success(unit: str) -> tuple[float, float]:
        metrics = json.loads((tmp_path / "out" / f"{unit}.json").read_text())["metrics"]
        return metrics["unlearn"]["success"], metrics["retention"]["success"]

    vanilla_unlearn, vanilla_retention = success("vanilla")
    assert vanilla_retention >= 95 and vanilla_unlearn <= 5
    ga = success("ga@0")[1]
    assert ga < 20 and success("random_labels@0")[1] < 20
    for unit in ("ga_gd@0", "ga_kl@0", "memflex@0"):
        assert success(unit)[1] > ga + 20, unit
        assert success(unit)[0] > 80, unit  # and they do forget
