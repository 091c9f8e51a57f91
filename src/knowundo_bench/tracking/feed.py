"""A finished unit's record fed to the run's loggers (:class:`Trackers`): its identity
and configuration, its optimizer steps and curve points merged in step order, its final
metrics flattened to ``unlearn/success``, ``prefix/<name>/…``, ``attack/<label>/…``.

Each logger call runs with the tracker library's stdout kept off the run's stdout
(where the leaderboard table goes) and its warnings silenced; a call that raises is a
warning line naming the logger and the unit, never a failed unit."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from knowundo_bench.records.files import load_record
from knowundo_bench.records.schema import Metrics, ResultRecord
from knowundo_bench.tracking.contract import CurveReading, Logger, TrackedUnit, TrainingStep, finite

# Final metrics that are not scope metrics: each a ``efficiency/…`` name and where it is read.
_EFFICIENCY = ("steps", "sec_per_step", "peak_mem_gb", "tokens_per_sec", "padding_fraction")


def tracked_unit(record: ResultRecord, group: str) -> TrackedUnit:
    """``record``'s unit as a tracker run of the run ``group``."""
    identity = record.identity
    config: dict[str, Any] = {
        "unit": record.unit or record.method,
        "method": record.method,
        "method_name": record.method_name,
        "params": record.params or {},
        "seed": record.seed,
        "method_seed": record.method_seed,
        "retain_data": record.retain_data,
        "overrides": list(record.overrides),
        "identity": None if identity is None else identity.model_dump(mode="json"),
        "spec": record.spec or {},
    }
    if record.localizer is not None:
        config["localizer"] = {"name": record.localizer.name, "params": record.localizer.params}
    if record.guard is not None:
        config["guard"] = {"name": record.guard.name, "params": record.guard.params}
    return TrackedUnit(
        group=group,
        name=record.unit or record.method,
        method=record.method,
        method_name=record.method_name or record.method,
        seed=record.seed if identity is None else identity.seed,
        model=None if identity is None else identity.model,
        data_hash=None if identity is None else identity.data_hash,
        spec_hash=None if identity is None else identity.spec_hash,
        status=record.status,
        config=config,
    )


def training_steps(record: ResultRecord) -> list[TrainingStep]:
    """Each optimizer step of the unit's unlearning (none for a vanilla model's record)."""
    training = record.training
    if training is None:
        return []
    count = max(len(training.step_losses), len(training.step_seconds))

    def at(values: Sequence[float | None], index: int) -> float | None:
        return values[index] if index < len(values) else None

    return [
        TrainingStep(
            step=index + 1,
            loss=at(training.step_losses, index),
            lr=at(training.step_lr, index),
            seconds=at(training.step_seconds, index),
            peak_mem_gb=at(training.step_peak_mem_gb, index),
        )
        for index in range(count)
    ]


def curve_readings(record: ResultRecord) -> list[CurveReading]:
    """Each point of the unit's curve (``eval.curve_every``), in step order."""
    points = sorted(record.curve or [], key=lambda point: point.step)
    return [
        CurveReading(
            point.step,
            flatten({key: value for key, value in point.model_dump().items() if key != "step"}, "curve/"),
        )
        for point in points
    ]


def final_metrics(record: ResultRecord) -> dict[str, float]:
    """The unit's final metrics as flat names: scope metrics (``unlearn/success``),
    ``avg_success``, ``general/…``, ``mia/…``, each prompt prefix's (``prefix/<name>/…``),
    each attack's (``attack/<label>/…``), the guard's accuracy and the efficiency summary."""
    found: dict[str, float] = {}
    if record.metrics is not None:
        found.update(metric_names(record.metrics))
        for label, attacked in record.metrics.attacks.items():
            found.update(metric_names(attacked, f"attack/{label}/"))
    if record.guard is not None:
        found.update(flatten(dict(record.guard.accuracy), "guard/accuracy/"))
    if record.training is not None:
        summary = record.training.model_dump()
        found.update(flatten({key: summary.get(key) for key in _EFFICIENCY}, "efficiency/"))
    if record.localizer is not None and finite(record.localizer.seconds):
        found["efficiency/localize_seconds"] = float(record.localizer.seconds)  # type: ignore[arg-type]
    if finite(record.wall_seconds):
        found["efficiency/wall_seconds"] = float(record.wall_seconds)  # type: ignore[arg-type]
    if record.vanilla is not None and finite(record.vanilla.accuracy):
        found["vanilla/accuracy"] = float(record.vanilla.accuracy)  # type: ignore[arg-type]
    return found


def metric_names(metrics: Metrics, prefix: str = "") -> dict[str, float]:
    """One ``Metrics`` section flattened (its attacks apart; ``raw`` left out)."""
    dumped = metrics.model_dump(exclude={"raw", "attacks", "name", "params", "key", "details"})
    dumped["prefix"] = dumped.pop("prompt_prefixes", {})
    return flatten(dumped, prefix)


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested mappings as ``a/b/c`` names, finite numbers only (text, lists and
    non-finite values are left out: a tracker plots numbers)."""
    flat: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}/"))
        elif finite(value):
            flat[f"{prefix}{key}"] = float(value)
    return flat


@dataclass
class Trackers:
    """The loggers of one run, each fed every unit whose record this run writes."""

    loggers: list[tuple[str, Logger]]
    group: str
    warn: Callable[[str], None]
    fed: list[str] = field(default_factory=list)  # units fed, in order

    def unit_finished(self, label: str, path: Path) -> None:
        """Feed the unit's record (as written to ``path``) to every logger."""
        record = load_record(path)
        if record is None or not self.loggers:
            return
        unit = tracked_unit(record, self.group)
        steps, points, final = training_steps(record), curve_readings(record), final_metrics(record)
        last = steps[-1].step if steps else max((point.step for point in points), default=0)
        for name, logger in self.loggers:
            calls = [partial(logger.start, unit)]
            calls += [
                partial(logger.log_step, item) if isinstance(item, TrainingStep) else partial(logger.log_curve, item)
                for item in timeline(steps, points)
            ]
            calls.append(partial(logger.log_final, final, last))
            if self.run_calls(name, label, calls):
                self.run_calls(name, label, [logger.finish])
            else:
                self.quietly(logger.finish)  # what the tracker holds for the unit, released
        self.fed.append(label)

    def close(self) -> None:
        """The end of the run: each logger releases what it holds."""
        for name, logger in self.loggers:
            self.run_calls(name, "the run", [logger.close])

    def run_calls(self, name: str, label: str, calls: Sequence[Callable[[], None]]) -> bool:
        """``calls`` in order until one raises (a warning naming ``name`` and ``label``)."""
        for call in calls:
            try:
                with tracker_call():
                    call()
            except Exception as error:  # a tracker's failure is never the unit's
                message = " ".join(str(error).split())[:300]
                self.warn(
                    f"warning: logger {name!r} failed on {label}: {type(error).__name__}: {message} "
                    "(the unit's record is unaffected)"
                )
                return False
        return True

    @staticmethod
    def quietly(call: Callable[[], None]) -> None:
        with contextlib.suppress(Exception), tracker_call():
            call()


def timeline(steps: Sequence[TrainingStep], points: Sequence[CurveReading]) -> list[TrainingStep | CurveReading]:
    """Steps and curve points in step order, a curve point after the training step of
    the same number (W&B drops a value logged at an earlier step than the last)."""
    merged: list[TrainingStep | CurveReading] = [*steps, *points]
    return sorted(merged, key=lambda item: (item.step, isinstance(item, CurveReading)))


@contextlib.contextmanager
def tracker_call() -> Iterator[None]:
    """A tracker library's call: what it prints goes nowhere (stdout carries the
    leaderboard table), its warnings are not the user's to act on."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield
