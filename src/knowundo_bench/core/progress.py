"""rich progress bars for long work, behind a tiny interface the harness can pass around.

On a terminal the bars are live; in a log file (stderr not a terminal) each task is one
line when it ends, and nothing is redrawn at the end of the run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


def stderr_console() -> Console:
    """Where ``run`` logs and draws progress: stderr (stdout is left to the leaderboard
    table), lines without the logging call's source location."""
    return Console(stderr=True, log_path=False, soft_wrap=True)


@dataclass
class Reporter:
    """One progress bar; ``advance`` it, optionally with a status text (e.g. the loss)."""

    progress: Progress | None
    task: TaskID | None
    ended_early: str | None = None  # why the task ended before its total, once it did

    def advance(self, amount: int = 1, status: str | None = None) -> None:
        if self.progress is not None and self.task is not None:
            if status is None:
                self.progress.update(self.task, advance=amount)
            else:
                self.progress.update(self.task, advance=amount, status=status)

    def extend(self, amount: int) -> None:
        """More work than planned (a stage whose size is known only as it runs): raise the
        total by ``amount``."""
        if self.progress is not None and self.task is not None and amount:
            total = self.progress.tasks[self.task].total or 0
            self.progress.update(self.task, total=total + amount)

    def end_early(self, reason: str) -> None:
        """The work ended before its planned total (e.g. "stopped early at epoch 15 (target
        reached)"): the bar completes at the work done and shows ``reason``."""
        self.ended_early = reason
        if self.progress is not None and self.task is not None:
            done = self.progress.tasks[self.task].completed
            self.progress.update(self.task, total=done, status=reason)


class ProgressBoard:
    """All bars of one run; quiet when ``enabled`` is false (tests). On a console that is
    not a terminal the bars are not drawn; each task logs one line when it ends."""

    def __init__(self, console: Console | None = None, enabled: bool = True) -> None:
        self.console = console or Console(quiet=True)
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("{task.description}", style="bold", markup=False),  # labels and names as written
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}", markup=False),
            console=self.console,
            disable=not enabled or not self.console.is_terminal,
        )

    def __enter__(self) -> ProgressBoard:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Reporter]:
        task = self.progress.add_task(description, total=total, status="")
        reporter = Reporter(self.progress, task)
        try:
            yield reporter
        finally:
            self.progress.stop_task(task)
            if self.enabled and not self.console.is_terminal:  # log files: one line per finished task
                state = self.progress.tasks[task]
                seconds = state.finished_time or state.elapsed or 0
                if reporter.ended_early:
                    self.log(f"{description}: {reporter.ended_early}, {state.completed:g} steps in {seconds:.1f} s")
                else:
                    status = state.fields.get("status")
                    self.log(
                        f"{description}: {state.completed:g}/{state.total or total:g} in {seconds:.1f} s"
                        + (f" ({status})" if status else "")
                    )

    def log(self, message: str, style: str | None = None) -> None:
        """A log line with its time, printed as written (never read as rich markup: it may
        quote a path or an error holding brackets); in a log file one unwrapped line."""
        text = Text(message, style=style or "")
        if self.console.is_terminal:
            self.console.log(text)
        else:
            self.console.print(Text(f"[{datetime.now():%H:%M:%S}] ") + text, soft_wrap=True, highlight=False)


NO_PROGRESS = Reporter(None, None)
