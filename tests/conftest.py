"""Shared fixtures: offline Hugging Face settings, temp caches, paths to shared data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The real KnowUnDo privacy data, kept outside the repository (see ../shared/data/README.md).
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
PRIVACY_DIR = SHARED_DATA / "knowundo" / "privacy"
SPECS_DIR = REPO_ROOT / "benchmark_specs"


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
