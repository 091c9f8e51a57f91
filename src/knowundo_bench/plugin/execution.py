"""How a suite's pending units reach an executor plugin (``register_executors``).

The runner decides what must run (units without a reusable record) and hands a
:class:`Suite` to the spec's executor (``execution.executor``): ``local`` runs the
units here, one after another; ``ray`` fans them out over a Ray cluster, each worker
rebuilding the suite from its :class:`SuitePayload`. Either way every unit writes its
own record atomically, so the leaderboard is built from the records alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from knowundo_bench.core.progress import ProgressBoard

UnitStatus = Literal["ok", "nonfinite", "failed"]


@dataclass(frozen=True)
class PendingUnit:
    """A unit to run: the vanilla model of a seed, or one method at one seed."""

    label: str  # its record's name ("vanilla", "ga", "ga@1")
    vanilla: str  # the label of the vanilla unit whose model it starts from (itself for a vanilla unit)
    method: str | None  # the method's name; None for a vanilla unit
    expected_seconds: float | None = None  # from earlier records of the same method, for longest-first


@dataclass(frozen=True)
class SuitePayload:
    """Plain data (picklable) from which a worker process rebuilds the suite."""

    spec: dict[str, Any]  # the validated spec, paths absolute
    source: str  # the spec file, for messages
    overrides: tuple[str, ...]
    output_dir: str
    cache_dir: str  # where vanilla models are cached (every worker must see it)


@dataclass(frozen=True)
class UnitResult:
    label: str
    status: UnitStatus
    seconds: float
    error: str | None = None


class Suite(Protocol):
    """What an executor receives: the pending units (vanilla units first, then methods
    in spec order), a way to run units in this process, and the driver's bookkeeping
    for units that ran elsewhere."""

    pending: list[PendingUnit]
    worker: Callable[..., list[UnitResult]]
    """What a worker process runs: ``worker(payload, labels, threads, *after)`` rebuilds
    the suite from the payload and runs ``labels`` there (a module-level function: it
    pickles by reference)."""

    @property
    def board(self) -> ProgressBoard:
        """Where the executor shows progress and logs."""
        ...

    @property
    def payload(self) -> SuitePayload:
        """Plain data a worker rebuilds the suite from."""
        ...

    def run_here(self, labels: Sequence[str]) -> list[UnitResult]:
        """Run these units in this process (a vanilla unit before the methods using it)."""
        ...

    def finished(self, result: UnitResult) -> None:
        """Note a unit that ran elsewhere (its record is already written)."""
        ...

    def record_failure(self, label: str, error: str) -> None:
        """Write a ``failed`` record for a unit whose worker could not finish it."""
        ...
