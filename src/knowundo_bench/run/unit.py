"""One method unit, from the vanilla weights: a guard fitted (if the method has one),
the localizer's selection, the method's ``unlearn`` hook, then the model evaluated and
attacked (``eval.attacks``), its curve finished and the training summarised into the
fields of the unit's record."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

import torch

from knowundo_bench.core.progress import ProgressBoard
from knowundo_bench.evaluate.curves import CurveRecorder
from knowundo_bench.evaluate.guarding import Guard, GuardContext
from knowundo_bench.evaluate.report import Evaluator, guard_record
from knowundo_bench.evaluate.scopes import NamedGuard
from knowundo_bench.plugin.manager import Plugins
from knowundo_bench.records.schema import LocalizerRecord, Metrics, ResultRecord, TrainingSummary
from knowundo_bench.run.attacks import Attacker, ModelUnderAttack
from knowundo_bench.run.identity import method_seed
from knowundo_bench.run.inputs import RunInputs
from knowundo_bench.run.resolution import ResolvedMethod, ResolvedSpec
from knowundo_bench.run.vanilla import VanillaModel
from knowundo_bench.train.context import UnlearnContext
from knowundo_bench.train.efficiency import peak_flops
from knowundo_bench.train.hook_types import Localization, LocalizerRun, MethodRun, RetainSet, TrainingReport
from knowundo_bench.train.loop import seed_everything


@dataclass(frozen=True)
class Start:
    """The vanilla model a group of units starts from, the evaluator bound to its
    encoders, and its metrics (the curves' step 0): measured, or read from the record an
    earlier run left; None on a process other than the main one of a multi-process run,
    which does not evaluate and has no record to read them from."""

    vanilla: VanillaModel
    evaluator: Evaluator
    metrics: Metrics | None
    attacker: Attacker | None = None  # the spec's attacks, with this evaluator


@dataclass(frozen=True)
class Workbench:
    """What every unit of a run shares: the resolved spec, the plugins, the loaded inputs,
    the progress board, and whether this process is the one that evaluates and writes."""

    resolved: ResolvedSpec
    plugins: Plugins
    inputs: RunInputs
    board: ProgressBoard
    main: bool = True


@dataclass(frozen=True)
class MethodOutcome:
    """A method unit's record, before the run's identity is stamped on it, and the
    localisation it trained under (the test kit checks updates against it)."""

    record: ResultRecord
    localization: Localization | None = None


def numerical_faults(losses: list[float], metrics: Metrics) -> list[str]:
    """NaN/inf training losses and NaN metrics, in words (a diverged perplexity, inf, is
    an expected outcome of gradient ascent and not listed)."""
    faults = []
    bad = [step + 1 for step, loss in enumerate(losses) if not math.isfinite(loss)]
    if bad:
        faults.append(f"non-finite training loss at {len(bad)} of {len(losses)} steps (first: step {bad[0]})")
    for scope in ("unlearn", "retention"):
        readings = getattr(metrics, scope).model_dump()
        if readings.get("refusal_rate") == 100.0:  # a guard refused every request: no perplexity to read
            readings = {k: v for k, v in readings.items() if not k.startswith("ppl")}
        values = {k: v for k, v in readings.items() if isinstance(v, float) and math.isnan(v)}
        if values:
            faults.append(f"{scope} metrics are NaN: {', '.join(values)}")
    return faults


def fit_guard(bench: Workbench, method: ResolvedMethod, start: Start, seed: int) -> tuple[NamedGuard, GuardContext]:
    """The method's guard fitted on the vanilla model, before unlearning, on RNG streams
    of its own: the unlearning run stays its unguarded twin's."""
    assert method.guard is not None
    benchmark = bench.inputs.benchmark
    context = GuardContext(
        model=start.vanilla.bundle.model,
        encoder=start.evaluator.encoder,
        forget=benchmark.forget,
        retain=benchmark.retain,
        seed=seed,
    )
    python_state = random.getstate()
    with bench.board.task(f"fit guard {method.guard.info.name}", 1) as reporter, torch.random.fork_rng():
        fitted = method.guard.info.fit(method.guard.params, context)
        reporter.advance(1)
    random.setstate(python_state)
    if not isinstance(fitted, Guard):
        raise RuntimeError(f"guard {method.guard.info.name!r}: fit returned no guard (refusal, refuses)")
    return NamedGuard(method.guard.info.name, fitted), context


def localize(
    bench: Workbench,
    method: ResolvedMethod,
    model: torch.nn.Module,
    retain: RetainSet,
    context: UnlearnContext,
    seed: int,
) -> tuple[Localization, LocalizerRecord]:
    """The localizer's selection, applied to ``context`` (the tensors and rows training may update)."""
    assert method.localizer is not None
    plugins = bench.plugins
    started = time.perf_counter()
    localization: Localization = plugins.call_on(
        method.localizer.plugin,
        "localize",
        plugins.localizers,
        localizer=LocalizerRun(method.localizer.info.name, method.localizer.params, seed),
        model=model,
        forget=bench.inputs.benchmark.forget,
        retain=retain,
        context=context,
    )
    context.trainable = set(localization.selected)
    context.row_masks = dict(localization.row_masks)
    record = LocalizerRecord.model_validate(
        {
            "name": method.localizer.info.name,
            "params": method.localizer.params.model_dump(mode="json"),
            "selected": localization.selected,
            **localization.details,
            "seconds": time.perf_counter() - started,
        }
    )
    return localization, record


def run_method(
    bench: Workbench,
    start: Start,
    method: ResolvedMethod,
    run_seed: int | None = None,
    label: str | None = None,
    *,
    attack_keys: dict[str, str] | None = None,
    earlier: ResultRecord | None = None,
) -> MethodOutcome:
    """Localise (if asked), unlearn, evaluate and attack one method on ``start``'s model,
    in place; in a process other than the main one of a multi-process run, only its
    status. With ``earlier`` (this unit's finished record, attacks missing) the
    unlearning is replayed to add the missing attacks, its metrics kept as recorded."""
    assert start.metrics is not None or not bench.main, "the vanilla model is evaluated first"
    spec, evaluator, model = bench.resolved.spec, start.evaluator, start.vanilla.bundle.model
    label = label or method.label
    seed = method_seed(bench.resolved, method, run_seed)
    seed_everything(seed)
    every = spec.eval.every_n_steps
    curve = None
    if every is not None and bench.main and earlier is None:  # the main process evaluates
        assert start.metrics is not None
        curve = CurveRecorder(evaluator, model, start.metrics, every)
    context = UnlearnContext(
        encoder=evaluator.encoder,
        seed=seed,
        domain=spec.data.domain,
        mixed_precision=spec.model.mixed_precision,
        board=bench.board,
        label=label,
        after_step=None if curve is None else curve.after_step,
        warmup_steps=spec.efficiency.warmup_steps,
    )
    retain = bench.inputs.retain(method.info.retain)
    guard = guard_context = None
    if method.guard is not None and bench.main:  # fitted on the vanilla model, before unlearning
        guard, guard_context = fit_guard(bench, method, start, seed)
    localization = localizer = None
    if method.localizer is not None:
        localization, localizer = localize(bench, method, model, retain, context, seed)
    report: TrainingReport = bench.plugins.call_on(
        method.plugin,
        "unlearn",
        bench.plugins.methods,
        method=MethodRun(method.info.name, method.label, method.params, seed),
        model=model,
        forget=bench.inputs.benchmark.forget,
        retain=retain,
        context=context,
    )
    if not bench.main:
        return MethodOutcome(ResultRecord(method=method.label, method_name=method.info.name), localization)
    target = ModelUnderAttack(
        label,
        model,
        spec.seed if run_seed is None else run_seed,
        attack_keys or {},
        (method.vanilla or spec.vanilla).lr,
        guard,
        None if earlier is None or earlier.metrics is None else earlier.metrics.attacks,
    )
    if earlier is not None and earlier.metrics is not None:
        return MethodOutcome(replayed(bench, start, target, report, earlier), localization)
    metrics = evaluator.metrics(label, model, guard)
    if start.attacker is not None:
        metrics = metrics.model_copy(update={"attacks": start.attacker.run(target)})
    guarded = None
    if method.guard is not None and guard_context is not None:
        guarded = guard_record(
            method.guard.info.name, method.guard.params.model_dump(mode="json"), metrics, guard_context.details
        )
    steps = len(report.step_seconds)
    points = None if curve is None else curve.finish(steps, None if guard is not None else metrics)
    faults = numerical_faults(report.step_losses, metrics)
    training = TrainingSummary.model_validate(
        {
            **report.summary(peak_flops(next(model.parameters()).device, spec.efficiency)),
            "step_seconds": report.step_seconds,
            "step_peak_mem_gb": report.step_peak_mem_gb,
            "step_tokens": report.step_tokens,
            "step_losses": report.step_losses,
            "step_lr": report.step_lr,
            "step_padding_fraction": report.step_padding_fraction,
        }
    )
    record = ResultRecord(
        method=method.label,
        status="nonfinite" if faults else "ok",
        numerical_faults=faults,
        method_name=method.info.name,
        ablation_of=method.ablation_of,
        method_seed=seed,
        retain_data=method.info.retain,
        params=method.params.model_dump(mode="json"),
        localizer=localizer,
        guard=guarded,
        training=training,
        metrics=metrics,
        curve=points,
    )
    return MethodOutcome(record, localization)


def replayed(
    bench: Workbench, start: Start, target: ModelUnderAttack, report: TrainingReport, earlier: ResultRecord
) -> ResultRecord:
    """``earlier`` with the missing attacks added on the replayed unlearning (a warning
    when the replay's training losses differ from the recorded ones)."""
    assert earlier.metrics is not None and start.attacker is not None
    recorded = [] if earlier.training is None else earlier.training.step_losses
    if recorded and not _same_losses(recorded, report.step_losses):
        bench.board.log(
            f"{target.label}: the replayed unlearning's losses differ from its record's; its attacks are on the replay",
            style="yellow",
        )
    metrics = earlier.metrics.model_copy(update={"attacks": start.attacker.run(target)})
    return earlier.model_copy(update={"metrics": metrics})


def _same_losses(recorded: list[float | None], replayed: list[float]) -> bool:
    """Whether a replay's losses are the record's (a record holds a non-finite loss as None)."""
    if len(recorded) != len(replayed):
        return False
    for before, after in zip(recorded, replayed, strict=True):
        if before is None or not math.isfinite(before):
            if math.isfinite(after):
                return False
        elif not math.isclose(before, after, rel_tol=1e-4, abs_tol=1e-6):
            return False
    return True
