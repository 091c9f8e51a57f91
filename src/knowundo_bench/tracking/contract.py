"""What a logger plugin receives: one tracker run per unit, opened with the unit's
identity and configuration, fed its optimizer steps and curve points in step order,
then its final metrics, then closed.

The harness feeds a unit when its record is written, from the record: the same calls
whether the unit ran here, in another process or on a Ray worker, and nothing a
tracker does can touch training. A logger that raises is reported as a warning and
skipped for the rest of that unit; the unit's record is never affected.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class TrackedUnit:
    """One unit as a tracker run. ``group`` is the spec's run name (trackers group a
    run's units under it), ``name`` the unit's record name (``ga_gd@1``)."""

    group: str
    name: str
    method: str  # the leaderboard row ("ga_gd", "memflex-all-params", "vanilla")
    method_name: str  # the plugin's method ("ga_gd")
    seed: int | None
    model: str | None
    data_hash: str | None
    spec_hash: str | None
    status: str  # ok, nonfinite or failed
    config: dict[str, Any] = field(default_factory=dict)  # the method's parameters, the resolved spec, identity

    @property
    def tags(self) -> dict[str, str]:
        """What trackers filter by: method, seed, model and data hash (those known)."""
        found = {
            "method": self.method,
            "method_name": self.method_name,
            "seed": None if self.seed is None else str(self.seed),
            "model": self.model,
            "data_hash": self.data_hash,
            "spec_hash": self.spec_hash,
            "status": self.status,
        }
        return {key: value for key, value in found.items() if value is not None}


@dataclass(frozen=True)
class TrainingStep:
    """One optimizer step of a unit's unlearning (1-based): its mean loss, the learning
    rate it used, its seconds and the peak memory it reached (GB)."""

    step: int
    loss: float | None = None
    lr: float | None = None
    seconds: float | None = None
    peak_mem_gb: float | None = None

    def values(self) -> dict[str, float]:
        """The step's readings as ``train/…`` metrics (the finite ones)."""
        found = {
            "train/loss": self.loss,
            "train/lr": self.lr,
            "train/sec_per_step": self.seconds,
            "train/peak_mem_gb": self.peak_mem_gb,
        }
        return {key: float(value) for key, value in found.items() if value is not None and finite(value)}


@dataclass(frozen=True)
class CurveReading:
    """One point of ``eval.curve_every`` (step 0 is the model before unlearning), as
    ``curve/…`` metrics."""

    step: int
    values: dict[str, float]


@dataclass(frozen=True)
class LoggerContext:
    """Where a logger may keep its local store (``output_dir``: the run's results
    folder) and how it reports (``log``: one line on the run's progress board)."""

    output_dir: Path
    run_name: str
    log: Callable[[str], None] = print


class Logger(Protocol):
    """One tracker for one ``knowundo-bench run``; each unit is one tracker run.

    The harness calls ``start`` once per unit, then ``log_step`` and ``log_curve`` in
    step order (a curve point after the training step of the same number), then
    ``log_final`` and ``finish``; ``close`` once at the end of the run."""

    def start(self, unit: TrackedUnit) -> None: ...

    def log_step(self, step: TrainingStep) -> None: ...

    def log_curve(self, point: CurveReading) -> None: ...

    def log_final(self, metrics: Mapping[str, float], step: int) -> None: ...

    def finish(self) -> None: ...

    def close(self) -> None: ...


def finite(value: object) -> bool:
    """Whether ``value`` is a number a tracker can plot (not None, inf or nan)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
