"""Reusing what an earlier run left: an output directory holds one spec's records, a unit
whose record was finished with the same inputs (the same unit key) is not run again, and
earlier records say how long each method's units take (for longest-first scheduling)."""

from __future__ import annotations

import os
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from knowundo_bench.benchmark.pairs import Benchmark
from knowundo_bench.core.errors import InputError
from knowundo_bench.core.progress import ProgressBoard
from knowundo_bench.plugin.execution import PendingUnit
from knowundo_bench.records.atomic import remove_stale_temporaries
from knowundo_bench.records.files import inspect_record, load_record, write_record
from knowundo_bench.records.layout import SUPERSEDED_DIR, record_path, samples_path
from knowundo_bench.records.lock import taken_at
from knowundo_bench.records.schema import ResultRecord
from knowundo_bench.run.identity import Provenance
from knowundo_bench.run.plan import Unit
from knowundo_bench.run.resolution import ResolvedSpec
from knowundo_bench.run.vanilla import vanilla_key


def output_directory(resolved: ResolvedSpec, override: Path | None) -> Path:
    directory = override or resolved.spec.output_dir or Path("results") / resolved.spec.name
    try:
        directory.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(prefix=".write-test-", dir=directory)  # a new file, never a link
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        raise InputError(f"output directory not writable ({error.strerror})", source=str(directory)) from None
    return directory


def claim_directory(directory: Path, spec_name: str, units: list[Unit], force: bool, board: ProgressBoard) -> None:
    """An output directory holds one spec's records: another spec's make this run fail
    (one line), unless ``force``, which removes them. Records of this spec's units
    that the spec no longer has (a method removed, seeds changed) move to
    ``superseded/``, so that the leaderboard shows only this run's units. A file a unit
    would write over that is not a knowundo-bench record is never replaced: one line."""
    for unit in units:
        path = record_path(directory, unit.label)
        if path.exists() or path.is_symlink():
            found = inspect_record(path)
            if found.data is None:
                why = f" ({found.problem})" if found.problem else ""
                raise InputError(
                    f"{path.name} is not a knowundo-bench record{why} and unit {unit.label} would replace it; "
                    "move it away or use another --output",
                    source=str(directory),
                )
    others = {}
    planned = {unit.label for unit in units}
    stale = []
    for path in sorted(directory.glob("*.json")):
        record = load_record(path)
        if record is None:
            continue
        if record.run is not None and record.run != spec_name:
            others[path] = record.run
        elif path.stem not in planned:
            stale.append(path)
    if stale and (force or not others):
        superseded = directory / SUPERSEDED_DIR
        superseded.mkdir(exist_ok=True)
        for path in stale:
            target, copy = superseded / path.name, 1
            while target.exists():  # an earlier move kept the same name: keep both
                target, copy = superseded / f"{path.stem}.{copy}{path.suffix}", copy + 1
            os.replace(path, target)
        board.log(
            f"moved {len(stale)} records of units this spec no longer has to {superseded}: "
            + ", ".join(path.stem for path in stale)
        )
    if not others:
        return
    names = ", ".join(sorted({repr(name) for name in others.values()}))
    if not force:
        raise InputError(
            f"holds results of spec {names}, not of {spec_name!r}; use another --output, or --force to replace them",
            source=str(directory),
        )
    for path in others:
        path.unlink()
    board.log(f"--force: removed {len(others)} records of spec {names}")


def unit_keys(provenance: Provenance, units: list[Unit], benchmark: Benchmark) -> dict[str, str]:
    """Each unit's key, from its vanilla model's cache key and its own inputs."""
    resolved = provenance.resolved
    return {
        unit.label: provenance.unit_key(vanilla_key(resolved, benchmark, unit.vanilla, unit.vanilla_seed), unit)
        for unit in units
    }


@dataclass(frozen=True)
class ReuseCheck:
    """Which of a run's units an earlier run already finished in ``directory``."""

    directory: Path
    provenance: Provenance
    keys: dict[str, str]  # each unit's key
    board: ProgressBoard
    force: bool = False

    def reusable_units(self, units: list[Unit], clean: bool = True) -> dict[str, ResultRecord]:
        """The records a previous run finished with these units' keys (``clean``: first
        remove what an interrupted run left half-written, and rewrite a record whose
        position in the spec changed; never in a worker, whose siblings may be writing)."""
        cleaned = remove_stale_temporaries(self.directory, "*.json", taken_at(self.directory)) if clean else []
        for leftover in cleaned:
            self.board.log(f"removed a half-written file from an interrupted run: {leftover.name}")
        done = {}
        for unit in units:
            record = self.reusable_record(unit)
            if record is None:
                continue
            if record.order != unit.order:  # methods reordered: the table follows the spec
                record = record.model_copy(update={"order": unit.order})
                if clean:
                    write_record(self.directory, unit.label, record)
            done[unit.label] = record
        return done

    def reusable_record(self, unit: Unit) -> ResultRecord | None:
        """The record of ``unit`` if a previous run finished it with these inputs (saying
        why when a record exists but its inputs changed)."""
        if self.force:
            return None
        record = load_record(record_path(self.directory, unit.label))
        if record is None:
            return None
        spec = self.provenance.resolved.spec
        samples_missing = spec.eval.log_samples and not samples_path(self.directory, unit.label).is_file()
        key = self.keys[unit.label]
        if record.unit_key == key and record.finished and not samples_missing:
            return record
        if record.unit_key != key and record.identity is not None and unit.method is not None:
            now = self.provenance.identity(unit)
            changed = [
                f"{what} {before} -> {after}"
                for what, before, after in (
                    ("method plugin", record.identity.method_plugin, now.method_plugin),
                    ("localizer plugin", record.identity.localizer_plugin, now.localizer_plugin),
                    ("knowundo-bench", record.identity.harness_version, now.harness_version),
                )
                if before != after
            ]
            if changed:
                self.board.log(f"recomputing {unit.label}: {'; '.join(changed)}")
        return None


def earlier_costs(directory: Path) -> dict[str, float]:
    """Median wall seconds per label (method label, or "vanilla") over the finished
    records in ``directory`` and its ``superseded/`` folder: what longest-first
    scheduling expects a unit to cost."""
    seconds: dict[str, list[float]] = {}
    for path in [*directory.glob("*.json"), *(directory / SUPERSEDED_DIR).glob("*.json")]:
        record = load_record(path)
        if record is not None and record.finished and record.wall_seconds:
            label = "vanilla" if record.method_name == "vanilla" else record.method
            seconds.setdefault(label, []).append(record.wall_seconds)
    return {label: statistics.median(values) for label, values in seconds.items()}


def pending_units(units: list[Unit], done: dict[str, ResultRecord], directory: Path) -> list[PendingUnit]:
    """The units without a reusable record, vanilla units first, each method's with
    its expected cost (median wall seconds of earlier records of the same method)."""
    costs = earlier_costs(directory)
    return [
        PendingUnit(
            label=unit.label,
            vanilla=unit.start,
            method=None if unit.fine_tuned or unit.method is None else unit.method.info.name,
            expected_seconds=costs.get(unit.label if unit.fine_tuned or unit.method is None else unit.method.label),
        )
        for unit in units
        if unit.label not in done
    ]
