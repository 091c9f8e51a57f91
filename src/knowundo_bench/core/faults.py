"""Fault injection for the crash-safety tests: ``KNOWUNDO_BENCH_FAULT=POINT:N`` kills the
process with SIGKILL the N-th time it passes ``POINT`` (``vanilla_step``,
``unlearn_step``, ``evaluate``, ``write``); ``POINT:N:SIGINT`` sends SIGINT instead, as
Ctrl-C would. With ``KNOWUNDO_BENCH_FAULT_ONCE=FILE`` the fault fires in one process
only, the first to create FILE (a retried Ray task then runs through). Unset, each point
costs one dict lookup."""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "KNOWUNDO_BENCH_FAULT"
ONCE_ENV = "KNOWUNDO_BENCH_FAULT_ONCE"
_passes: Counter[str] = Counter()


def fault_point(point: str) -> None:
    target = os.environ.get(ENV)
    if not target:
        return
    name, _, rest = target.partition(":")
    if name != point:
        return
    count, _, signal_name = rest.partition(":")
    _passes[point] += 1
    if _passes[point] == int(count or 1):
        once = os.environ.get(ONCE_ENV)
        if once:
            try:
                os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return  # another process took the fault already
        os.kill(os.getpid(), signal.SIGINT if signal_name == "SIGINT" else signal.SIGKILL)
