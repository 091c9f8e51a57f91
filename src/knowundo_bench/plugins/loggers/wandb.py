"""Logger ``wandb``: Weights & Biases.

Each unit is one W&B run in ``project`` (default: the spec's run name), grouped by the
run name, tagged with its method, seed, model and data hash; its final metrics are the
run's summary. ``mode`` defaults to ``online`` when the user is logged in
(``WANDB_API_KEY`` in the environment, or ``wandb login``'s entry in ``~/.netrc`` for
``WANDB_BASE_URL``'s host) and to ``offline`` otherwise: the runs are then files under
``wandb/`` in the results folder, which ``wandb sync`` uploads later. The key is W&B's
own, read by its library from the environment or the netrc file, never from a spec.
"""

from __future__ import annotations

import netrc
import os
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from knowundo_bench.api import (
    CurveReading,
    LoggerContext,
    LoggerInfo,
    Params,
    TrackedUnit,
    TrainingStep,
    hookimpl,
)

MAX_TAG = 64  # W&B refuses longer tags


class WandbParams(Params):
    project: str | None = Field(None, min_length=1, description="W&B project (default: the spec's run name)")
    entity: str | None = Field(None, min_length=1, description="W&B team or user (default: the account's own)")
    mode: Literal["online", "offline", "disabled"] | None = Field(
        None, description="online when logged in, else offline (files to `wandb sync` later)"
    )


def logged_in() -> bool:
    """Whether W&B has a key for its host: ``WANDB_API_KEY``, or a netrc entry."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urllib.parse.urlsplit(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        return host is not None and netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


class WandbLogger:
    def __init__(self, params: WandbParams, context: LoggerContext) -> None:
        self.params = params
        self.project = params.project or context.run_name
        self.mode = params.mode or ("online" if logged_in() else "offline")
        self.folder = context.output_dir.absolute()
        self.run: Any = None
        where = f"offline files under {self.folder / 'wandb'} (wandb sync uploads them)"
        context.log(f"wandb: units logged {'online' if self.mode == 'online' else where} (project {self.project})")

    def start(self, unit: TrackedUnit) -> None:
        import wandb

        self.run = wandb.init(
            project=self.project,
            entity=self.params.entity,
            name=unit.name,
            group=unit.group,
            job_type="vanilla" if unit.method == "vanilla" else "unlearn",
            tags=[f"{key}:{value}"[:MAX_TAG] for key, value in unit.tags.items()],
            config=unit.config,
            mode=self.mode,
            dir=str(self.folder),
            reinit="create_new",
            settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
        )

    def log_step(self, step: TrainingStep) -> None:
        self.run.log(step.values(), step=step.step)

    def log_curve(self, point: CurveReading) -> None:
        self.run.log(point.values, step=point.step)

    def log_final(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.summary.update(dict(metrics))

    def finish(self) -> None:
        run, self.run = self.run, None
        if run is not None:
            run.finish()

    def close(self) -> None:
        self.finish()


@hookimpl
def register_loggers() -> list[LoggerInfo]:
    return [
        LoggerInfo(
            name="wandb",
            description="Weights & Biases: online when logged in, else offline runs in the results folder.",
            params=WandbParams,
            create=WandbLogger,  # WandbLogger(params, context)
            requires="wandb",
        )
    ]
