"""Experiment trackers (issue 29): what a unit's record becomes in a tracker, failures
that stay warnings, each built-in logger against its real library offline (Trackio's
SQLite store, W&B's offline run file, MLflow's SQLite store) read back, the spec's
``logging`` and ``--log-to`` checked before any training, and a quickstart run logged
to Trackio and MLflow."""

from __future__ import annotations

import copy
import json
import shutil
import sqlite3
import struct
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from knowundo_bench.cli import app
from knowundo_bench.core.errors import InputError
from knowundo_bench.plugin.manager import get_plugins
from knowundo_bench.records.files import load_record
from knowundo_bench.run.resolution import parse_spec
from knowundo_bench.tracking.contract import CurveReading, LoggerContext, TrainingStep
from knowundo_bench.tracking.feed import Trackers, final_metrics, timeline, tracked_unit, tracker_call

SCHEMA1 = Path(__file__).parent / "fixtures" / "records-schema1"
ROOT = Path(__file__).resolve().parents[1]
STEPS = 45  # the fixture's GA record


def unit_record(folder: Path, name: str = "ga@1") -> Path:
    """The fixture's GA record with what newer records hold: each step's learning rate, a
    curve, an attack, a prompt prefix; written as unit ``name``."""
    record = json.loads((SCHEMA1 / "ga.json").read_text())
    record["unit"] = name
    record["seed"] = 1
    record["training"]["step_lr"] = [1e-3 * (index + 1) / STEPS for index in range(STEPS)]
    record["curve"] = [
        {"step": step, "unlearn_success": 10.0 * index, "retention_success": 90.0 - index}
        for index, step in enumerate((0, 15, 30, 45))
    ]
    attacked = copy.deepcopy({key: record["metrics"][key] for key in ("unlearn", "retention", "avg_success")})
    attacked["unlearn"]["success"] = 12.5
    record["metrics"]["attacks"] = {"quantize4": {**attacked, "name": "quantize", "params": {"bits": 4}}}
    record["metrics"]["unlearn"]["ppl"] = "inf"  # a diverged perplexity: no tracker plots it
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(record))
    return path


def loggers_for(names: list[str], output: Path, lines: list[str], **params) -> Trackers:
    plugins = get_plugins()
    context = LoggerContext(output_dir=output, run_name="quickstart", log=lines.append)
    opened = []
    for name in names:
        info = plugins.loggers.get(name, "logging")
        with tracker_call():  # as the runner opens them
            opened.append((name, info.create(info.params.model_validate(params.get(name, {})), context)))
    return Trackers(opened, "quickstart", lines.append)


# --- what a record becomes ------------------------------------------------------------


def test_curve_points_follow_the_training_step_of_their_number(tmp_path):
    record = load_record(unit_record(tmp_path))
    steps = [TrainingStep(step=s) for s in (1, 2, 3)]
    points = [CurveReading(2, {}), CurveReading(0, {}), CurveReading(3, {})]
    order = [(item.step, type(item).__name__) for item in timeline(steps, points)]
    assert order == [
        (0, "CurveReading"),
        (1, "TrainingStep"),
        (2, "TrainingStep"),
        (2, "CurveReading"),
        (3, "TrainingStep"),
        (3, "CurveReading"),
    ]
    unit = tracked_unit(record, "quickstart")
    assert unit.tags["method"] == "ga" and unit.tags["seed"] == "1" and unit.group == "quickstart"
    assert unit.name == "ga@1"


def test_final_metrics_name_scopes_prefixes_attacks_and_leave_out_non_finite(tmp_path):
    record = load_record(unit_record(tmp_path))
    final = final_metrics(record)
    assert final["unlearn/success"] == record.metrics.unlearn.success
    assert final["retention/success"] == record.metrics.retention.success
    assert final["attack/quantize4/unlearn/success"] == 12.5
    prefix = next(iter(record.metrics.prompt_prefixes))
    assert final[f"prefix/{prefix}/unlearn/success"] == record.metrics.prompt_prefixes[prefix].unlearn.success
    assert "unlearn/ppl" not in final  # "inf" in the record
    assert final["efficiency/steps"] == STEPS
    assert not any(name.startswith("train/") for name in final)  # never a point on a step series


class Recording:
    """A logger that records its calls; ``fail_on`` names the call that raises."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[str] = []
        self.fail_on = fail_on

    def __getattr__(self, name):
        def call(*args):
            self.calls.append(name)
            print("a tracker's chatter on stdout")
            warnings.warn("a tracker's deprecation", DeprecationWarning, stacklevel=1)
            if name == self.fail_on:
                raise ConnectionError("server\nunreachable")

        return call


def test_a_failing_logger_is_one_warning_and_the_others_are_fed(tmp_path, capsys):
    path = unit_record(tmp_path)
    broken, healthy, lines = Recording(fail_on="log_step"), Recording(), []
    trackers = Trackers([("broken", broken), ("healthy", healthy)], "quickstart", lines.append)
    trackers.unit_finished("ga@1", path)
    trackers.close()
    assert lines == [
        "warning: logger 'broken' failed on ga@1: ConnectionError: server unreachable (the unit's record is unaffected)"
    ]
    assert broken.calls == ["start", "log_curve", "log_step", "finish", "close"]  # stopped, then released
    assert healthy.calls.count("log_step") == STEPS and healthy.calls.count("log_curve") == 4
    assert healthy.calls[-3:] == ["log_final", "finish", "close"]
    assert capsys.readouterr().out == ""  # stdout carries the leaderboard table only


# --- each built-in against its real library, offline ----------------------------------


def read_trackio(folder: Path, project: str) -> dict[str, list[tuple[int, dict]]]:
    with sqlite3.connect(folder / f"{project}.db") as db:
        rows = db.execute("SELECT run_name, step, metrics FROM metrics ORDER BY id").fetchall()
    found: dict[str, list[tuple[int, dict]]] = {}
    for run, step, metrics in rows:
        found.setdefault(run, []).append((step, json.loads(metrics)))
    return found


def test_trackio_store_holds_each_step_and_the_final_metrics(tmp_path):
    path, lines = unit_record(tmp_path / "results"), []
    trackers = loggers_for(["trackio"], tmp_path / "results", lines)
    trackers.unit_finished("ga@1", path)
    trackers.close()
    record = load_record(path)
    logged = read_trackio(tmp_path / "results" / "trackio", "quickstart")["ga@1"]
    losses = [(step, values["train/loss"]) for step, values in logged if "train/loss" in values]
    assert losses == [(index + 1, loss) for index, loss in enumerate(record.training.step_losses)]
    assert [values["train/lr"] for _, values in logged if "train/lr" in values] == record.training.step_lr
    assert [step for step, values in logged if "curve/unlearn_success" in values] == [0, 15, 30, 45]
    final = next(values for _, values in logged if "unlearn/success" in values)
    assert final["unlearn/success"] == record.metrics.unlearn.success
    assert final["retention/success"] == record.metrics.retention.success
    assert not any("warning" in line for line in lines), lines


def wandb_records(path: Path):
    """The protobuf records of a W&B offline run file (a LevelDB-style log: 32 KiB
    blocks, each record a CRC, a length and a FULL/FIRST/MIDDLE/LAST type)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, position, pending = path.read_bytes(), 7, b""
    assert data[:4] == b":W&B"
    while position + 7 <= len(data):
        left = 32768 - position % 32768
        if left < 7:
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunk, position = data[position + 7 : position + 7 + length], position + 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending + chunk)
            pending = b""
            yield record
        elif kind in (2, 3):
            pending += chunk
        else:
            break


def test_wandb_offline_run_holds_each_step_and_the_summary(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    path, lines = unit_record(tmp_path / "results"), []
    trackers = loggers_for(["wandb"], tmp_path / "results", lines)
    assert any("offline" in line for line in lines)
    trackers.unit_finished("ga@1", path)
    trackers.close()
    assert not any("warning" in line for line in lines), lines
    (run_file,) = (tmp_path / "results" / "wandb").glob("offline-run-*/run-*.wandb")
    history, summary, run = [], {}, None
    for item in wandb_records(run_file):
        kind = item.WhichOneof("record_type")
        if kind == "run":
            run = item.run
        elif kind == "history":
            history.append({entry.key or "/".join(entry.nested_key): entry.value_json for entry in item.history.item})
        elif kind == "summary":
            summary.update({e.key or "/".join(e.nested_key): json.loads(e.value_json) for e in item.summary.update})
    record = load_record(path)
    assert run.display_name == "ga@1" and run.run_group == "quickstart" and "method:ga" in run.tags
    assert sum("train/loss" in row for row in history) == STEPS
    assert summary["unlearn/success"] == record.metrics.unlearn.success
    assert summary["retention/success"] == record.metrics.retention.success


def mlflow_runs(uri: str, experiment: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy's deprecations inside MLflow's store
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id])
        return client, {run.info.run_name: run for run in runs}


def test_mlflow_store_holds_each_step_and_the_final_metrics(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path, lines = unit_record(tmp_path / "results"), []
    trackers = loggers_for(["mlflow"], tmp_path / "results", lines)
    trackers.unit_finished("ga@1", path)
    trackers.close()
    assert not any("warning" in line for line in lines), lines
    client, runs = mlflow_runs(f"sqlite:///{tmp_path / 'results' / 'mlflow' / 'mlflow.db'}", "quickstart")
    record, run = load_record(path), runs["ga@1"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [
        (index + 1, loss) for index, loss in enumerate(record.training.step_losses)
    ]
    assert run.data.metrics["unlearn/success"] == record.metrics.unlearn.success
    assert run.data.metrics["retention/success"] == record.metrics.retention.success
    assert run.data.tags["method"] == "ga" and run.data.tags["seed"] == "1" and run.info.status == "FINISHED"
    assert run.data.params["method"] == "ga"


# --- the spec's logging and --log-to --------------------------------------------------


def spec_with(**fields) -> dict:
    return {"name": "logged", "methods": [{"name": "ga"}], **fields}


def test_logging_entries_resolve_with_their_parameters():
    resolved = parse_spec(
        spec_with(logging=["trackio", {"name": "mlflow", "experiment": "mine"}]), get_plugins(), log_to=["trackio"]
    )
    assert [logger.info.name for logger in resolved.loggers] == ["trackio", "mlflow"]  # --log-to's twin dropped
    assert resolved.loggers[1].params.experiment == "mine"
    with_cli = parse_spec(spec_with(), get_plugins(), log_to=["wandb", "mlflow"])
    assert [logger.info.name for logger in with_cli.loggers] == ["wandb", "mlflow"]


@pytest.mark.parametrize(
    ("fields", "log_to", "message"),
    [
        ({"logging": ["wandbb"]}, [], "logging.0.name: unknown logger 'wandbb'; did you mean 'wandb'?"),
        ({}, ["mlflw"], "--log-to: unknown logger 'mlflw'; did you mean 'mlflow'?"),
        ({"logging": [{"name": "trackio", "projct": "x"}]}, [], "logging.0.projct"),
        ({"logging": [{"name": "trackio", "dir": "../elsewhere"}]}, [], "logging.0.dir"),
        ({"logging": [{"name": "mlflow", "tracking_uri": "http://tracker.example.com"}]}, [], "plain http://"),
        (
            {"logging": [{"name": "mlflow", "tracking_uri": "https://user:secret@tracker.example.com"}]},
            [],
            "must not hold credentials",
        ),
        ({"logging": [{"name": "wandb", "mode": "loud"}]}, [], "logging.0.mode"),
    ],
)
def test_bad_logging_is_one_line_naming_the_field(fields, log_to, message):
    with pytest.raises(InputError) as caught:
        parse_spec(spec_with(**fields), get_plugins(), log_to=log_to)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert "secret" not in str(caught.value)


def test_a_missing_tracker_library_fails_before_any_training(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(
        InputError, match=r"--log-to: logger 'wandb' needs wandb: pip install 'knowundo-bench\[wandb\]'"
    ):
        parse_spec(spec_with(), get_plugins(), log_to=["wandb"])


def test_loggers_are_not_part_of_the_run_identity():
    from knowundo_bench.run.identity import spec_hash

    plain = parse_spec(spec_with(), get_plugins())
    logged = parse_spec(spec_with(logging=["trackio"]), get_plugins(), log_to=["mlflow"])
    assert spec_hash(plain) == spec_hash(logged)  # adding a tracker reuses every finished unit
    assert logged.echo() == plain.echo()  # records and workers never see the trackers


def test_mlflow_refuses_a_plain_http_server_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracker.example.com:5000")
    with pytest.raises(InputError, match="MLFLOW_TRACKING_URI: plain http://"):
        loggers_for(["mlflow"], tmp_path, [])


# --- a whole run ----------------------------------------------------------------------


@pytest.mark.slow
def test_quickstart_logged_to_trackio_and_mlflow_holds_one_run_per_unit(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = tmp_path / "quickstart.yaml"
    shutil.copy(ROOT / "benchmark_specs" / "quickstart.yaml", spec)
    output = tmp_path / "results"
    result = CliRunner().invoke(
        app, ["run", str(spec), "-o", str(output), "--no-progress", "--log-to", "trackio", "--log-to", "mlflow"]
    )
    assert result.exit_code == 0, result.output
    assert "warning: logger" not in result.output
    records = {path.stem: load_record(path) for path in output.glob("*.json")}
    assert len(records) == 10  # vanilla and three methods at three seeds
    trackio = read_trackio(output / "trackio", "quickstart")
    _, mlflow = mlflow_runs(f"sqlite:///{output / 'mlflow' / 'mlflow.db'}", "quickstart")
    assert set(trackio) == set(mlflow) == set(records)
    for unit, record in records.items():
        final = next(values for _, values in trackio[unit] if "unlearn/success" in values)
        for store in (final, mlflow[unit].data.metrics):
            assert store["unlearn/success"] == record.metrics.unlearn.success, unit
            assert store["retention/success"] == record.metrics.retention.success, unit
        steps = record.training.steps if record.training else 0
        assert sum("train/loss" in values for _, values in trackio[unit]) == steps
        assert mlflow[unit].data.tags["method"] == record.method


def test_wandb_goes_online_only_when_logged_in(tmp_path, monkeypatch):
    from knowundo_bench.plugins.loggers.wandb import WandbLogger, WandbParams

    context = LoggerContext(output_dir=tmp_path, run_name="quickstart", log=lambda line: None)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    netrc = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(netrc))
    assert WandbLogger(WandbParams(), context).mode == "offline"  # no key anywhere
    netrc.write_text("machine api.wandb.ai login user password abc123\n")
    netrc.chmod(0o600)
    assert WandbLogger(WandbParams(), context).mode == "online"  # wandb login's entry
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.com")
    assert WandbLogger(WandbParams(), context).mode == "offline"  # a key for another host
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert WandbLogger(WandbParams(), context).mode == "online"
    assert WandbLogger(WandbParams(mode="offline"), context).mode == "offline"  # the spec's choice wins
