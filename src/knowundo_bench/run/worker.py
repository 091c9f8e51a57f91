"""A worker process's entry point (Ray tasks): the suite rebuilt from its payload, and
the given units run there, reusing the records other units wrote."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from knowundo_bench.core.progress import ProgressBoard
from knowundo_bench.plugin.execution import SuitePayload, UnitResult
from knowundo_bench.plugin.manager import get_plugins
from knowundo_bench.run.inputs import load_inputs
from knowundo_bench.run.machine import Machine, prepare_process
from knowundo_bench.run.resolution import parse_spec
from knowundo_bench.run.suite import UnitSuite
from knowundo_bench.run.unit import Workbench
from knowundo_bench.train import distributed


def run_in_worker(payload: SuitePayload, labels: Sequence[str], threads: int, *after: object) -> list[UnitResult]:
    """Rebuild the suite from ``payload`` and run ``labels`` here, reusing the records
    other units wrote (the vanilla unit's, whose task ran first: ``after`` holds its
    result, so the scheduler waits for it)."""
    plugins = get_plugins()
    spec = {**payload.spec, "cache_dir": payload.cache_dir}  # the cache the driver checked, not this $HOME's
    resolved = dataclasses.replace(parse_spec(spec, plugins, payload.source), overrides=payload.overrides)
    output_dir = Path(payload.output_dir)
    with ProgressBoard(enabled=False) as board:
        prepare_process(resolved.spec.threads or threads)
        machine = Machine(resolved, plugins)
        machine.device  # noqa: B018 (a worker without the device fails before reading any data)
        inputs = load_inputs(resolved, plugins, board)
        bench = Workbench(resolved, plugins, inputs, board, distributed.is_main())
        suite = UnitSuite.assemble(bench, output_dir, machine, run_in_worker, clean=False, running=labels)
        return suite.run_here(labels)
