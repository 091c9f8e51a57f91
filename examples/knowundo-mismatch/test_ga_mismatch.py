"""The example plugin's own tests, written with knowundo_bench.testing as a plugin
author would write them (`pytest` in this folder, with knowundo-bench installed)."""

from __future__ import annotations

import knowundo_mismatch

from knowundo_bench.testing import assert_confined_updates, unlearn_once


def test_ga_mismatch_updates_the_model_and_nothing_else(tmp_path):
    trial = unlearn_once({"name": "ga_mismatch", "mismatch_weight": 0.5}, knowundo_mismatch, workdir=tmp_path)
    assert_confined_updates(trial, every_trainable=True)
    assert trial.record.status == "ok" and trial.record.params["mismatch_weight"] == 0.5
    # the forgotten answers become less likely than they were for the vanilla model
    assert trial.record.metrics.unlearn.ppl > trial.vanilla_metrics.unlearn.ppl


def test_ga_mismatch_respects_a_localizer(tmp_path):
    method = {"name": "ga_mismatch", "localizer": {"name": "memflex", "mu": 0.8, "sigma_percentile": 50, "n_passes": 1}}
    trial = unlearn_once(method, knowundo_mismatch, workdir=tmp_path)
    assert_confined_updates(trial)
    assert trial.changed <= trial.trainable < set(trial.before)
