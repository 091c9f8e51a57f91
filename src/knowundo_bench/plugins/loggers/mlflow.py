"""Logger ``mlflow``: MLflow tracking.

Each unit is one MLflow run in ``experiment`` (default: the spec's run name, which so
groups a run's units), tagged with its method, seed, model and data hash; its
configuration flattened into parameters, its steps and curve points as metric
histories, its final metrics at its last step. The store is ``tracking_uri``, else
``MLFLOW_TRACKING_URI`` from the environment, else a SQLite file in the results folder
(``mlflow/mlflow.db``: MLflow 3 keeps its folder store in maintenance; open it with
``mlflow ui --backend-store-uri sqlite:///…/mlflow.db``).

A server's credentials are MLflow's own variables (``MLFLOW_TRACKING_TOKEN``, …),
never a spec's; a ``tracking_uri`` may not hold them, plain ``http://`` reaches only
this machine, and the host is logged before the first request.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator

from knowundo_bench.api import (
    CurveReading,
    InputError,
    LoggerContext,
    LoggerInfo,
    Params,
    TrackedUnit,
    TrainingStep,
    hookimpl,
)

LOOPBACK = {"localhost", "127.0.0.1", "::1"}
SCHEMES = {"sqlite", "file", "http", "https"}
MAX_PARAM_VALUE = 6000  # MLflow's limit on a parameter's value
BATCH = 1000  # metrics per log_batch call (MLflow's limit)
PARAMS_BATCH = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /:]")  # what MLflow refuses in metric and parameter names


def check_uri(value: str) -> str:
    """A tracking URI this harness may send runs to (``ValueError``, one line, if not)."""
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"sqlite:///FILE, file:FOLDER, https://HOST or http://localhost (got {parts.scheme!r}:)")
    if parts.scheme in {"http", "https"}:
        if "@" in parts.netloc or parts.query or parts.fragment:
            raise ValueError("must not hold credentials or a query (MLflow reads MLFLOW_TRACKING_TOKEN)")
        if parts.scheme == "http" and (parts.hostname or "") not in LOOPBACK:
            raise ValueError("plain http:// reaches only this machine (the runs would cross the network unencrypted)")
    return value


class MlflowParams(Params):
    experiment: str | None = Field(None, min_length=1, description="MLflow experiment (default: the spec's run name)")
    tracking_uri: str | None = Field(
        None, description="MLflow store (default: MLFLOW_TRACKING_URI, else mlflow/mlflow.db in the results folder)"
    )

    @field_validator("tracking_uri")
    @classmethod
    def _allowed(cls, value: str | None) -> str | None:
        return None if value is None else check_uri(value)


def metric_name(name: str) -> str:
    return _UNSAFE.sub("_", name)


def flat_params(values: Any, prefix: str = "") -> dict[str, str]:
    """A configuration as MLflow parameters: ``a/b/0`` names, text values (cut to MLflow's limit)."""
    if isinstance(values, Mapping):
        found: dict[str, str] = {}
        for key, value in values.items():
            found.update(flat_params(value, f"{prefix}{key}/"))
        return found
    if isinstance(values, list) and values and all(isinstance(v, Mapping) for v in values):
        found = {}
        for index, value in enumerate(values):
            found.update(flat_params(value, f"{prefix}{index}/"))
        return found
    text = values if isinstance(values, str) else json.dumps(values)
    return {metric_name(prefix.rstrip("/"))[:250]: text[:MAX_PARAM_VALUE]}


class MlflowLogger:
    def __init__(self, params: MlflowParams, context: LoggerContext) -> None:
        from_environment = os.environ.get("MLFLOW_TRACKING_URI")
        if params.tracking_uri is not None:
            uri = params.tracking_uri
        elif from_environment:
            try:
                uri = check_uri(from_environment)
            except ValueError as error:
                raise InputError(f"MLFLOW_TRACKING_URI: {error}") from None
        else:
            folder = (context.output_dir / "mlflow").absolute()
            folder.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{folder / 'mlflow.db'}"
        self.uri = uri
        self.experiment_name = params.experiment or context.run_name
        self.experiment_id: str | None = None
        self.run_id: str | None = None
        self.status = "FINISHED"
        self.pending: list[Any] = []
        host = urllib.parse.urlsplit(uri).hostname
        where = f"the server at {host}" if host else uri
        context.log(f"mlflow: units logged to {where} (experiment {self.experiment_name})")
        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):  # its database set-up talks at INFO (set after its import)
            logging.getLogger(name).setLevel(logging.WARNING)
        self.client = MlflowClient(tracking_uri=uri)

    def start(self, unit: TrackedUnit) -> None:
        from mlflow.entities import Param

        if self.experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment_name)
            self.experiment_id = (
                found.experiment_id if found is not None else self.client.create_experiment(self.experiment_name)
            )
        tags = {**unit.tags, "group": unit.group}
        run = self.client.create_run(self.experiment_id, run_name=unit.name, tags=tags)
        self.run_id = run.info.run_id
        self.status = "FAILED" if unit.status == "failed" else "FINISHED"
        params = [Param(key, value) for key, value in flat_params(unit.config).items()]
        for first in range(0, len(params), PARAMS_BATCH):
            self.client.log_batch(self.run_id, params=params[first : first + PARAMS_BATCH])

    def _add(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(metric_name(key), value, now, step) for key, value in values.items()]
        if len(self.pending) >= BATCH:
            self._flush()

    def _flush(self) -> None:
        while self.pending and self.run_id is not None:
            batch, self.pending = self.pending[:BATCH], self.pending[BATCH:]
            self.client.log_batch(self.run_id, metrics=batch)

    def log_step(self, step: TrainingStep) -> None:
        self._add(step.values(), step.step)

    def log_curve(self, point: CurveReading) -> None:
        self._add(point.values, point.step)

    def log_final(self, metrics: Mapping[str, float], step: int) -> None:
        self._add(metrics, step)
        self._flush()

    def finish(self) -> None:
        run_id, self.run_id, self.pending = self.run_id, None, []
        if run_id is not None:
            self.client.set_terminated(run_id, status=self.status)

    def close(self) -> None:
        self.finish()


@hookimpl
def register_loggers() -> list[LoggerInfo]:
    return [
        LoggerInfo(
            name="mlflow",
            description="MLflow: a SQLite store in the results folder, or tracking_uri.",
            params=MlflowParams,
            create=MlflowLogger,  # MlflowLogger(params, context)
            requires="mlflow",
        )
    ]
