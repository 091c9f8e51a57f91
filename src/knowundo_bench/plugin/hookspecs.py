"""Hook specifications: the whole contract between the harness and its plugins.

Every built-in feature (each unlearning method, the MemFlex localizer, each data and
model source) is an ordinary plugin implementing these hooks and importing only from
:mod:`knowundo_bench.api`, as a third-party plugin does. Built-ins are registered from
the table of plugin kinds (:data:`knowundo_bench.plugin.kinds.KINDS`: one ``register_*``
hook per kind), third-party plugins through the ``knowundo_bench`` entry-point group.
``docs/plugins.md`` documents each hook with an example (a test keeps it in step with the
signatures below).

pluggy calls every hook with keyword arguments only; an implementation may accept any
subset of a spec's arguments. Two kinds of hooks exist:

* ``register_*`` hooks describe what a plugin offers (name, description, parameter
  model); the harness collects them into registries used for validation, the
  ``methods`` command and "did you mean" errors.
* ``unlearn`` and ``localize`` do the work. The harness calls them only on the plugin
  that registered the requested name, so an implementation never needs to check names
  unless one plugin registers several methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import torch

    from knowundo_bench.benchmark.pairs import QAPair
    from knowundo_bench.plugin.registry import (
        AttackInfo,
        DataSourceInfo,
        ExecutorInfo,
        GeneratorInfo,
        GuardInfo,
        LocalizerInfo,
        LoggerInfo,
        MethodInfo,
        ModelSourceInfo,
        OodSourceInfo,
    )
    from knowundo_bench.train.context import UnlearnContext
    from knowundo_bench.train.hook_types import Localization, LocalizerRun, MethodRun, RetainSet, TrainingReport

PROJECT = "knowundo_bench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_methods() -> list[MethodInfo]:
    """Return the unlearning methods (objectives) this plugin provides.

    Each :class:`MethodInfo` names the method as specs refer to it, describes it in
    one line and gives the pydantic model of its parameters (which the harness uses to
    validate the spec). A method may name a ``default_localizer`` (MemFlex does).
    """


@hookspec
def register_localizers() -> list[LocalizerInfo]:
    """Return the localizers this plugin provides: ways to choose which parameters an
    unlearning method may update. Any localizer can be combined with any method."""


@hookspec
def register_attacks() -> list[AttackInfo]:
    """Return the attacks this plugin provides (``eval.attacks`` in a spec): ways to try
    to bring forgotten knowledge back after unlearning (quantization, relearning). Each
    attack's ``apply`` receives its validated parameters, a copy of the model and an
    ``AttackContext`` (the encoder, both scopes' train pairs, a seed, the vanilla
    learning rate, the training loop); the harness measures the scope metrics again on
    the attacked model and records them under the attack's label."""


@hookspec
def register_data_sources() -> list[DataSourceInfo]:
    """Return the benchmark data sources this plugin provides (``data.source`` in a
    spec): each turns its validated parameters into a list of QA pairs."""


@hookspec
def register_ood_sources() -> list[OodSourceInfo]:
    """Return the sources of out-of-distribution retain data this plugin provides
    (``ood_retain.source`` in a spec): each turns its validated parameters into text
    passages that hold none of the benchmark's own questions or answers. Methods
    registered with ``retain="out_of_distribution"`` train on them instead of the
    Retention Scope (the paper's "GA + GD/KL on OOD")."""


@hookspec
def register_model_sources() -> list[ModelSourceInfo]:
    """Return the model sources this plugin provides (``model.source`` in a spec):
    each builds a fresh base model and tokenizer, and saves and reloads a vanilla one."""


@hookspec
def register_executors() -> list[ExecutorInfo]:
    """Return the executors this plugin provides (``execution.executor`` in a spec): each
    runs a suite's pending units, in this process (``local``) or elsewhere (``ray``)."""


@hookspec
def register_guards() -> list[GuardInfo]:
    """Return the guards this plugin provides (``guard:`` in a method entry): request
    filters that refuse some requests in front of the model, its weights untouched. Each
    guard's ``fit`` receives its validated parameters and a ``GuardContext`` (the vanilla
    model, the encoder, both scopes' train splits) and returns the fitted guard."""


@hookspec
def register_generators() -> list[GeneratorInfo]:
    """Return the text generators this plugin provides (``generator.name`` in a build
    spec for ``knowundo-bench build``): each turns the prompts of the benchmark
    construction pipeline (appendix B: question-answer pairs, Self-Check verdicts,
    queries, answers) into text, offline from templates, from a local model or from an
    API. The harness parses, checks and caches what they return."""


@hookspec
def register_loggers() -> list[LoggerInfo]:
    """Return the experiment trackers this plugin provides (``logging`` in a spec,
    ``--log-to`` on the command line): each ``create`` returns a logger that receives,
    for every unit the run writes, one tracker run: the unit's identity and
    configuration, each optimizer step (loss, learning rate, seconds, memory), each
    curve point, the final metrics (with attacks, guards and prompt prefixes), then the
    close. A logger that raises is a warning, never a failed unit."""


@hookspec(firstresult=True)
def unlearn(
    method: MethodRun,
    model: torch.nn.Module,
    forget: list[QAPair],
    retain: RetainSet,
    context: UnlearnContext,
) -> TrainingReport | None:
    """Update the trainable parameters of ``model`` in place so that it forgets
    ``forget`` (the Unlearn Scope's train split) and keeps ``retain`` (the Retention
    Scope's train split).

    ``retain`` is the out-of-distribution passages instead when the method was
    registered with ``retain="out_of_distribution"``.

    ``method`` carries the method's name, label and validated parameters;
    ``context.train`` runs the shared training loop with a given loss, restricted to
    the parameters the localizer selected (if any). With parameters derived from
    ``ForgetRetainParams`` the loss receives the official mixed micro-batches: a
    ``"forget"`` part, a ``"retain"`` part or both, each with its ``share`` of the
    examples (``knowundo_bench.api.scope_terms`` sums the terms present, weighted by
    share or not); otherwise every micro-batch pairs a forget batch with a retain
    batch. Return the training report.
    """


@hookspec(firstresult=True)
def localize(
    localizer: LocalizerRun,
    model: torch.nn.Module,
    forget: list[QAPair],
    retain: RetainSet,
    context: UnlearnContext,
) -> Localization | None:
    """Return the set of parameter names that unlearning may update, with per-tensor
    details worth recording (MemFlex: cosine and magnitude of each tensor's gradient).
    Must not change the model's parameters."""
