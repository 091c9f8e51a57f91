"""Where knowundo-bench keeps what it can rebuild: vanilla models, converted weights,
generator answers and the results index (``$KNOWUNDO_BENCH_CACHE``, else
``~/.cache/knowundo-bench``)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "KNOWUNDO_BENCH_CACHE"
DEFAULT_CACHE = Path.home() / ".cache" / "knowundo-bench"


def cache_home() -> Path:
    """The cache folder: ``$KNOWUNDO_BENCH_CACHE`` when set, else the default."""
    return Path(os.environ.get(CACHE_ENV, DEFAULT_CACHE))
