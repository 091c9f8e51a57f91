"""Runs a resolved spec end to end, in phases that read top to bottom: the plan, the
processes, the inputs, the output directory, what can be reused, then the rest through
the spec's executor, each unit writing its own record."""

from __future__ import annotations

import os
from pathlib import Path

from knowundo_bench.core.errors import InputError
from knowundo_bench.core.progress import ProgressBoard
from knowundo_bench.plugin.manager import Plugins
from knowundo_bench.records.files import load_record, schema_problems
from knowundo_bench.records.layout import record_path
from knowundo_bench.run.inputs import load_inputs
from knowundo_bench.run.machine import Machine, default_threads, prepare_process
from knowundo_bench.run.plan import plan_units, vanilla_units
from knowundo_bench.run.resolution import ResolvedSpec
from knowundo_bench.run.reuse import claim_directory
from knowundo_bench.run.suite import RunOutcome, UnitSuite
from knowundo_bench.run.tracking import open_trackers
from knowundo_bench.run.unit import Workbench
from knowundo_bench.run.worker import run_in_worker
from knowundo_bench.train import distributed
from knowundo_bench.train.sharding import ShardingConfig

__all__ = ["RunOutcome", "Runner"]


class Runner:
    """One run of a spec: its units (vanilla models, then each method at each seed), each
    from the same vanilla weights. :meth:`run` is :meth:`prepare` (every phase up to the
    units left to run), then the spec's executor, then the vanilla targets checked."""

    def __init__(
        self, resolved: ResolvedSpec, plugins: Plugins, output_dir: Path, board: ProgressBoard, force: bool = False
    ) -> None:
        self.resolved = resolved
        self.plugins = plugins
        self.output_dir = output_dir
        self.board = board
        self.force = force
        self.units = plan_units(resolved)  # what an interrupted run counts as saved or not

    def run(self) -> RunOutcome:
        """The whole suite: what can be reused is, the rest goes to the spec's executor;
        each record this run writes goes to the spec's trackers."""
        suite = self.prepare()
        executor = self.resolved.executor
        trackers = open_trackers(self.resolved, self.output_dir, self.board) if distributed.is_main() else None
        if trackers is not None:
            suite.outcome.listeners.append(trackers.unit_finished)
        try:
            if suite.pending:
                if self.resolved.runs_here:
                    suite.machine.check()  # work to do here: device and model first (a finished run needs neither)
                if executor is None:
                    suite.run_here([unit.label for unit in suite.pending])
                else:
                    self.plugins.call_executor(executor, suite=suite)
        finally:
            if trackers is not None:
                trackers.close()
        outcome = suite.outcome
        for unit in vanilla_units(self.units):  # a vanilla model below its target, whoever trained it
            record = load_record(record_path(self.output_dir, unit.label))
            if record is not None and record.vanilla is not None and record.vanilla.target_met is False:
                outcome.target_missed.append(unit.label)
        return outcome

    def prepare(self) -> UnitSuite:
        """Every phase before the units run: processes, device and model (a fresh run
        checks them before reading any data), inputs, the output directory, the units'
        keys and the records that can be reused."""
        resolved, board = self.resolved, self.board
        self.start_processes()
        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        prepare_process(resolved.spec.threads or default_threads(local_processes))
        machine = Machine(resolved, self.plugins)
        if resolved.runs_here and (self.force or not any(self.output_dir.glob("*.json"))):
            machine.check()  # a fresh run: an unavailable device or model fails before any data is read
        inputs = load_inputs(resolved, self.plugins, board)
        main = distributed.is_main()  # of a multi-process run: the one that evaluates and writes
        if main:
            claim_directory(self.output_dir, resolved.spec.name, self.units, self.force, board)
            for problem in schema_problems(self.output_dir):  # damaged records: recomputed, not fatal
                board.log(f"warning: skipped {problem}", style="yellow")
        bench = Workbench(resolved, self.plugins, inputs, board, main)
        suite = UnitSuite.assemble(bench, self.output_dir, machine, run_in_worker, force=self.force, clean=main)
        distributed.barrier()  # every process sees the same records
        for label in suite.done:
            suite.outcome.records[label] = record_path(self.output_dir, label)
            suite.outcome.reused.append(label)
        if suite.done:
            board.log(f"reused finished results: {', '.join(suite.done)} (--force recomputes)")
        return suite

    def start_processes(self) -> None:
        """The processes of a multi-process launch joined (one process: nothing to do)."""
        processes = distributed.world_size()
        if processes > 1:
            distributed.check_supported()
            if not self.resolved.runs_here:
                assert self.resolved.executor is not None
                raise InputError(
                    f"execution.executor: {self.resolved.executor.info.name!r} under a multi-process launch "
                    "(each process would submit the whole suite); use the local executor"
                )
            if self.resolved.attacks:  # only the main process evaluates: a relearning there would wait for the others
                raise InputError(
                    "eval.attacks: not under a multi-process launch; run the spec in one process (attacks are "
                    "not in the units' keys: a one-process rerun of a finished run adds only them)"
                )
        distributed.start()
        if processes > 1:
            how = "sharded (FSDP2)" if ShardingConfig.from_environment() else "data-parallel"
            self.board.log(f"each unit {how} over {processes} processes")
