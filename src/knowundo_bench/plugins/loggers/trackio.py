"""Logger ``trackio``: Hugging Face's local-first tracker.

Each unit is one Trackio run in the project (default: the spec's run name), grouped by
the run name. The store is a SQLite file per project in ``dir`` (default ``trackio/``
in the results folder); ``trackio show --project NAME`` with ``TRACKIO_DIR`` set to
that folder opens the dashboard. Nothing leaves this machine: the plugin never passes
a Space, a server or a dataset to Trackio.

Trackio reads its folder once, when it is imported (``TRACKIO_DIR``); the plugin points
every loaded Trackio module at the unit's folder while the unit is logged and puts the
previous folder back after it, so two runs in one process keep their own stores.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from knowundo_bench.api import (
    CurveReading,
    LoggerContext,
    LoggerInfo,
    Params,
    TrackedUnit,
    TrainingStep,
    hookimpl,
)

_FOLDERS = {"TRACKIO_DIR": "", "MEDIA_DIR": "media", "ARTIFACTS_DIR": "artifacts"}


class TrackioParams(Params):
    project: str | None = Field(None, min_length=1, description="Trackio project (default: the spec's run name)")
    dir: str = Field("trackio", min_length=1, description="folder of the local store, relative to the results folder")

    @field_validator("dir")
    @classmethod
    def _inside_results(cls, value: str) -> str:
        path = Path(value)
        if path.is_absolute() or ".." in path.parts:
            raise ValueError("a folder inside the results folder (relative, without '..')")
        return value


class TrackioLogger:
    def __init__(self, params: TrackioParams, context: LoggerContext) -> None:
        self.project = params.project or context.run_name
        self.folder = (context.output_dir / params.dir).absolute()
        self.saved: list[tuple[Any, str, Any]] = []
        self.previous_env: str | None = None
        self.run: Any = None
        context.log(f"trackio: units logged to {self.folder} (project {self.project})")

    def start(self, unit: TrackedUnit) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._point_at(self.folder)
        import trackio

        self._point_at(self.folder)  # the modules this import loaded
        self.run = trackio.init(
            project=self.project,
            name=unit.name,
            group=unit.group,
            config={**unit.config, "tags": unit.tags},
            auto_log_cpu=False,
            auto_log_gpu=False,
            embed=False,
        )

    def log_step(self, step: TrainingStep) -> None:
        self.run.log(step.values(), step=step.step)

    def log_curve(self, point: CurveReading) -> None:
        self.run.log(point.values, step=point.step)

    def log_final(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.log(dict(metrics), step=step)

    def finish(self) -> None:
        try:
            if self.run is not None:
                import trackio

                trackio.finish()  # the run init made current: finished, and no longer current at exit
        finally:
            self.run = None
            self._restore()

    def close(self) -> None:
        self._restore()

    def _point_at(self, folder: Path) -> None:
        """Every loaded Trackio module's folder constants (and ``TRACKIO_DIR``) set to
        ``folder``, the previous values kept for :meth:`_restore`."""
        if not self.saved and self.previous_env is None:
            self.previous_env = os.environ.get("TRACKIO_DIR", "")
        os.environ["TRACKIO_DIR"] = str(folder)
        for name, module in list(sys.modules.items()):
            if module is None or not (name == "trackio" or name.startswith("trackio.")):
                continue
            for attribute, sub in _FOLDERS.items():
                if attribute in vars(module) and isinstance(vars(module)[attribute], Path):
                    value = folder / sub if sub else folder
                    if vars(module)[attribute] != value:
                        self.saved.append((module, attribute, vars(module)[attribute]))
                        setattr(module, attribute, value)

    def _restore(self) -> None:
        for module, attribute, value in reversed(self.saved):
            setattr(module, attribute, value)
        self.saved.clear()
        if self.previous_env is not None:
            if self.previous_env:
                os.environ["TRACKIO_DIR"] = self.previous_env
            else:
                os.environ.pop("TRACKIO_DIR", None)
            self.previous_env = None


@hookimpl
def register_loggers() -> list[LoggerInfo]:
    return [
        LoggerInfo(
            name="trackio",
            description="Trackio, local-first: a SQLite store in the results folder.",
            params=TrackioParams,
            create=TrackioLogger,  # TrackioLogger(params, context)
            requires="trackio",
        )
    ]
