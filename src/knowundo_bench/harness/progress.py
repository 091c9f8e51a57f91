"""rich progress bars for long work, behind a tiny interface the harness can pass around."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

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


@dataclass
class Reporter:
    """One progress bar; ``advance`` it, optionally with a status text (e.g. the loss)."""

    progress: Progress | None
    task: TaskID | None

    def advance(self, amount: int = 1, status: str | None = None) -> None:
        if self.progress is not None and self.task is not None:
            if status is None:
                self.progress.update(self.task, advance=amount)
            else:
                self.progress.update(self.task, advance=amount, status=status)


class ProgressBoard:
    """All bars of one run; quiet when ``enabled`` is false (tests, non-TTY logs)."""

    def __init__(self, console: Console | None = None, enabled: bool = True) -> None:
        self.console = console or Console(quiet=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            disable=not enabled,
        )

    def __enter__(self) -> ProgressBoard:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Reporter]:
        task = self.progress.add_task(description, total=total, status="")
        try:
            yield Reporter(self.progress, task)
        finally:
            self.progress.stop_task(task)
            if not self.console.is_terminal:  # log files get one line per finished task
                state = self.progress.tasks[task]
                self.log(
                    f"{description}: {state.completed:g}/{total} in {state.finished_time or state.elapsed or 0:.1f} s"
                    + (f" ({state.fields['status']})" if state.fields.get("status") else "")
                )

    def log(self, message: str) -> None:
        self.console.log(message)


NO_PROGRESS = Reporter(None, None)
