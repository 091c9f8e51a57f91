"""knowundo_bench.testing, the kit plugin authors test with: it runs in seconds and its
checks fail for the mistakes they are meant to catch."""

from __future__ import annotations

import types

import pytest
import torch

from knowundo_bench.api import MethodInfo, TrainingParams, TrainingReport, answer_loss, hookimpl
from knowundo_bench.testing import assert_confined_updates, run_spec, tiny_spec, unlearn_once

MEMFLEX = {"name": "memflex", "mu": 0.8, "sigma_percentile": 50, "n_passes": 1}


def method_plugin(name: str, unlearn) -> types.ModuleType:
    """A plugin module registering method ``name`` with ``unlearn`` as its hook."""

    @hookimpl
    def register_methods() -> list[MethodInfo]:
        return [MethodInfo(name=name, description=f"{name} (test).", params=TrainingParams)]

    plugin = types.ModuleType(f"plugin_{name}")
    plugin.register_methods = register_methods  # type: ignore[attr-defined]
    plugin.unlearn = hookimpl(unlearn)  # type: ignore[attr-defined]
    return plugin


def test_gradient_ascent_moves_every_tensor(tmp_path):
    trial = unlearn_once("ga", workdir=tmp_path)
    assert trial.trainable == set(trial.before)
    assert_confined_updates(trial, every_trainable=True)
    assert trial.record.status == "ok" and trial.record.metrics.unlearn.success is not None


def test_a_localised_method_moves_only_the_selected_tensors(tmp_path):
    trial = unlearn_once({"name": "ga", "localizer": MEMFLEX}, workdir=tmp_path)
    assert 0 < len(trial.trainable) < len(trial.before)
    assert_confined_updates(trial)
    assert trial.changed <= trial.trainable


def test_a_method_that_writes_a_frozen_tensor_fails_the_check(tmp_path):
    def unlearn(method, model, forget, context) -> TrainingReport:
        report = context.train(
            model, objective=lambda m, b: -answer_loss(m, b["forget"]), params=method.params, forget=forget
        )
        frozen = next(p for n, p in model.named_parameters() if n not in context.trainable)
        with torch.no_grad():
            frozen.add_(1e-3)
        return report

    trial = unlearn_once({"name": "leaky", "localizer": MEMFLEX}, method_plugin("leaky", unlearn), workdir=tmp_path)
    with pytest.raises(AssertionError, match="frozen tensors changed"):
        assert_confined_updates(trial)


def test_row_localised_updates_are_checked_row_by_row(tmp_path):
    neurons = {"name": "memflex_neurons", "mu": 0.8, "sigma_percentile": 50, "n_passes": 1}
    trial = unlearn_once({"name": "ga", "localizer": neurons}, workdir=tmp_path)
    assert trial.row_masks and all(not bool(mask.all()) for mask in trial.row_masks.values())
    assert_confined_updates(trial)

    def unlearn(method, model, forget, context) -> TrainingReport:
        report = context.train(
            model, objective=lambda m, b: -answer_loss(m, b["forget"]), params=method.params, forget=forget
        )
        name, keep = next(iter(context.row_masks.items()))
        with torch.no_grad():
            dict(model.named_parameters())[name][~keep] += 1e-3
        return report

    leaky = unlearn_once(
        {"name": "leaky_rows", "localizer": neurons}, method_plugin("leaky_rows", unlearn), workdir=tmp_path
    )
    with pytest.raises(AssertionError, match="unselected rows of .* changed"):
        assert_confined_updates(leaky)


def test_a_method_that_trains_nothing_fails_the_check(tmp_path):
    trial = unlearn_once(
        "idle", method_plugin("idle", lambda method, model, forget, context: TrainingReport()), workdir=tmp_path
    )
    with pytest.raises(AssertionError, match="changed no parameter"):
        assert_confined_updates(trial)


def test_run_spec_runs_builtins_and_extra_plugins_together(tmp_path):
    def unlearn(method, model, forget, context) -> TrainingReport:
        return context.train(
            model, objective=lambda m, b: -answer_loss(m, b["forget"]), params=method.params, forget=forget
        )

    outcome = run_spec(tiny_spec("ga", "mine", workdir=tmp_path), tmp_path / "out", method_plugin("mine", unlearn))
    assert outcome.failed == [] and set(outcome.records) == {"vanilla", "ga", "mine"}
