"""Shared fixtures: offline Hugging Face settings, temp caches, paths to shared data."""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The real KnowUnDo privacy data, kept outside the repository (see ../shared/data/README.md).
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
PRIVACY_DIR = SHARED_DATA / "knowundo" / "privacy"
SPECS_DIR = REPO_ROOT / "benchmark_specs"


def under_a_mutant() -> bool:
    """True in a mutmut worker testing one mutant (``make mutate``, issue 30)."""
    return "__mutmut_" in os.environ.get("MUTANT_UNDER_TEST", "")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under a mutant, the quickest tests first: mutmut stops at the first failure (-x),
    so a mutant dies at its cheapest failing test; the verdict does not change."""
    stats = Path("mutmut-stats.json")  # mutmut runs its workers in mutants/
    if under_a_mutant() and stats.is_file():
        seconds = json.loads(stats.read_text(encoding="utf-8")).get("duration_by_test", {})
        items.sort(key=lambda item: seconds.get(item.nodeid, 0.0))


def pytest_collection_finish() -> None:
    """Under a mutant, freeze the objects the fork inherited: each ``gc.collect()``
    (accelerate's ``free_memory`` between units) would otherwise walk, and copy on
    write, the millions that torch and transformers made at import."""
    if under_a_mutant():
        gc.freeze()


@pytest.fixture(autouse=True)
def offline_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test runs offline with Hugging Face and vanilla-model caches in temp folders."""
    cache = tmp_path_factory.mktemp("caches")
    monkeypatch.setenv("HF_HOME", str(cache / "hf_home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache / "hf_datasets"))
    monkeypatch.setenv("KNOWUNDO_BENCH_CACHE", str(cache / "knowundo_bench"))
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    return cache


@pytest.fixture
def privacy_dir() -> Path:
    """The shared privacy domain; CI lays ../shared beside the clone, so its absence is a failure."""
    if not PRIVACY_DIR.is_dir():
        pytest.fail(f"shared KnowUnDo privacy data missing at {PRIVACY_DIR}")
    return PRIVACY_DIR
