"""Executor ``local`` (the default): every pending unit in this process, one after
another, each vanilla model trained or loaded once for the units that start from it."""

from __future__ import annotations

from knowundo_bench.api import ExecutorInfo, Params, Suite, hookimpl


def execute(params: Params, suite: Suite) -> None:
    suite.run_here([unit.label for unit in suite.pending])


@hookimpl
def register_executors() -> list[ExecutorInfo]:
    return [
        ExecutorInfo(
            name="local",
            description="Every unit in this process, in spec order (the default).",
            params=Params,
            execute=execute,
            in_process=True,
        )
    ]
