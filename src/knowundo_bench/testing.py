"""Helpers for a plugin author's own tests (as tox ships ``tox.pytest``).

Run a method on the tiny model in seconds and check what it did::

    from knowundo_bench.testing import assert_confined_updates, unlearn_once
    import my_plugin

    def test_my_method(tmp_path):
        trial = unlearn_once({"name": "my_method", "epochs": 1}, my_plugin, workdir=tmp_path)
        assert_confined_updates(trial)            # trainable tensors moved, frozen ones did not
        assert trial.record.metrics.unlearn.success is not None

:func:`run_spec` runs a whole spec (vanilla model, every method, result records) with
extra plugins registered, without installing them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from knowundo_bench.core.progress import ProgressBoard
from knowundo_bench.plugin.manager import Plugins, make_plugin_manager
from knowundo_bench.records.schema import Metrics, ResultRecord
from knowundo_bench.run.inputs import load_inputs
from knowundo_bench.run.machine import Machine
from knowundo_bench.run.resolution import parse_spec
from knowundo_bench.run.runner import Runner
from knowundo_bench.run.suite import RunOutcome, UnitSuite
from knowundo_bench.run.unit import Workbench, run_method
from knowundo_bench.run.worker import run_in_worker

__all__ = [
    "TINY_SPEC",
    "UnlearnTrial",
    "assert_confined_updates",
    "plugins_with",
    "run_spec",
    "tiny_spec",
    "unlearn_once",
]

# Three synthetic authors and a 1-layer, 32-wide Llama: a whole run takes seconds on a CPU.
TINY_SPEC: dict[str, Any] = {
    "name": "plugin-test",
    "seed": 0,
    "data": {"source": "synthetic", "n_authors": 3},
    "model": {"source": "tiny", "device": "cpu", "hidden_size": 32, "num_layers": 1, "num_heads": 2, "vocab_size": 400},
    "vanilla": {"epochs": 3, "lr": 3e-3, "batch_size": 16, "grad_accum": 1},
    "eval": {"batch_size": 32, "max_new_tokens": 8, "rouge": False, "prompt_prefixes": {}},
    "methods": [],
}

# What a method entry gets unless it says otherwise: one epoch of batch-4 steps.
QUICK_TRAINING: dict[str, Any] = {"epochs": 1, "batch_size": 4, "grad_accum": 1, "lr": 1e-3}


def tiny_spec(*methods: str | dict[str, Any], workdir: Path | None = None, **overrides: Any) -> dict[str, Any]:
    """:data:`TINY_SPEC` with ``methods`` (names, or entries as in a YAML spec; one epoch
    of batch-4 steps unless given) and top-level ``overrides``; with ``workdir`` the
    vanilla cache lives under it."""
    spec = copy.deepcopy(TINY_SPEC)
    spec["methods"] = [{**QUICK_TRAINING, **({"name": m} if isinstance(m, str) else m)} for m in methods]
    if workdir is not None:
        spec["cache_dir"] = str(workdir / "cache")
    spec.update(copy.deepcopy(overrides))
    return spec


def plugins_with(*plugins: object) -> Plugins:
    """The built-in plugins plus ``plugins`` (modules or objects with ``@hookimpl``
    functions), without loading installed entry points."""
    return Plugins(make_plugin_manager(*plugins, load_entry_points=False))


def run_spec(spec: dict[str, Any], output_dir: Path, *plugins: object) -> RunOutcome:
    """Run ``spec`` end to end (as ``knowundo-bench run`` does, without progress bars)
    with ``plugins`` registered; the records land in ``output_dir``."""
    registered = plugins_with(*plugins)
    resolved = parse_spec(spec, registered)
    with ProgressBoard(console=None, enabled=False) as board:
        return Runner(resolved, registered, output_dir, board).run()


@dataclass
class UnlearnTrial:
    """One method run on the tiny vanilla model: its record (metrics, training summary,
    localizer), the vanilla model's metrics, and every parameter tensor before and after
    unlearning."""

    record: ResultRecord
    vanilla_metrics: Metrics
    before: dict[str, torch.Tensor]
    after: dict[str, torch.Tensor]
    trainable: set[str]  # the localizer's selection (else every parameter) that requires grad
    row_masks: dict[str, torch.Tensor]  # selected rows of row-localised tensors (memflex_neurons)

    @property
    def changed(self) -> set[str]:
        return {name for name, value in self.after.items() if not torch.equal(value, self.before[name])}


def unlearn_once(method: str | dict[str, Any], *plugins: object, workdir: Path) -> UnlearnTrial:
    """Train the tiny vanilla model (cached under ``workdir``), run ``method`` on it
    through the harness's own hooks, evaluate it, and keep the weights before and after."""
    spec = tiny_spec(method, workdir=workdir)
    registered = plugins_with(*plugins)
    resolved = parse_spec(spec, registered)
    (resolved_method,) = resolved.methods
    with ProgressBoard(console=None, enabled=False) as board:
        bench = Workbench(resolved, registered, load_inputs(resolved, registered, board), board)
        machine = Machine(resolved, registered)
        suite = UnitSuite.assemble(bench, workdir / "results", machine, run_in_worker, force=True)
        start = suite.start(suite.units[0])  # measured and recorded afresh, whatever the folder holds
        assert start.metrics is not None
        model = start.vanilla.bundle.model
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        requires_grad = {name for name, p in model.named_parameters() if p.requires_grad}
        outcome = run_method(bench, start, resolved_method)
        after = {name: p.detach().clone() for name, p in model.named_parameters()}
    localization = outcome.localization
    selected = set(localization.selected) if localization is not None else set(before)
    row_masks = {name: mask.cpu() for name, mask in localization.row_masks.items()} if localization else {}
    return UnlearnTrial(outcome.record, start.metrics, before, after, selected & requires_grad, row_masks)


def assert_confined_updates(trial: UnlearnTrial, *, every_trainable: bool = False) -> None:
    """Fail unless the method changed some trainable parameter (with ``every_trainable``:
    all of them) and left every other parameter, and the unselected rows of row-localised
    tensors, bit for bit as they were."""
    changed = trial.changed
    frozen_changed = sorted(changed - trial.trainable)
    if frozen_changed:
        raise AssertionError(f"{len(frozen_changed)} frozen tensors changed, e.g. {frozen_changed[0]}")
    for name, keep in trial.row_masks.items():
        if not torch.equal(trial.after[name][~keep], trial.before[name][~keep]):
            raise AssertionError(f"unselected rows of {name} changed")
    if not changed:
        raise AssertionError("the method changed no parameter")
    untouched = sorted(trial.trainable - changed)
    if every_trainable and untouched:
        raise AssertionError(f"{len(untouched)} trainable tensors did not change, e.g. {untouched[0]}")
