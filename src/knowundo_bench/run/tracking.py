"""The trackers of a run (``logging`` and ``--log-to``), opened before its units run."""

from __future__ import annotations

from pathlib import Path

from knowundo_bench.core.errors import InputError, describe
from knowundo_bench.core.progress import ProgressBoard
from knowundo_bench.run.resolution import ResolvedSpec
from knowundo_bench.tracking.contract import Logger, LoggerContext
from knowundo_bench.tracking.feed import Trackers, tracker_call


def open_trackers(resolved: ResolvedSpec, output_dir: Path, board: ProgressBoard) -> Trackers | None:
    """Each logger created (a bad setting is an ``InputError``; any other failure to
    open a tracker is a warning, and the run goes on without it); None without loggers."""
    if not resolved.loggers:
        return None

    def warn(message: str) -> None:
        board.log(message, style="yellow")

    context = LoggerContext(output_dir=output_dir, run_name=resolved.spec.name, log=board.log)
    opened: list[tuple[str, Logger]] = []
    for logger in resolved.loggers:
        name = logger.info.name
        try:
            with tracker_call():
                opened.append((name, logger.info.create(logger.params, context)))
        except InputError:
            raise
        except Exception as error:  # an unreachable tracker must not stop the benchmark
            warn(f"warning: logger {name!r} could not start ({describe(error)}); the run goes on without it")
    return Trackers(opened, resolved.spec.name, warn)
