"""Runs a resolved spec end to end: data, vanilla model, each method, result records."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import statistics
import subprocess
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import transformers

from knowundo_bench import __version__
from knowundo_bench.harness import distributed
from knowundo_bench.harness.context import UnlearnContext
from knowundo_bench.harness.contracts import Localization, LocalizerRun, MethodRun, TrainingReport
from knowundo_bench.harness.data import (
    Benchmark,
    QAPair,
    RetainText,
    check_out_of_distribution,
    first_instances,
)
from knowundo_bench.harness.efficiency import peak_flops
from knowundo_bench.harness.encoding import PromptEncoder
from knowundo_bench.harness.errors import InputError, reported_as_input
from knowundo_bench.harness.evaluation import (
    NamedGuard,
    ScopeScores,
    evaluate,
    evaluate_scopes,
    evaluation_work,
    scope_metrics,
)
from knowundo_bench.harness.execution import PendingUnit, SuitePayload, UnitResult
from knowundo_bench.harness.general import (
    evaluate_general,
    general_average,
    offline_task_configs,
)
from knowundo_bench.harness.guards import Guard, GuardContext
from knowundo_bench.harness.hub import require_hub
from knowundo_bench.harness.models import ModelFactory, ModelSnapshot, resolve_device
from knowundo_bench.harness.plugin_manager import Plugins
from knowundo_bench.harness.progress import ProgressBoard
from knowundo_bench.harness.records.atomic import atomic_write_text, remove_stale_temporaries
from knowundo_bench.harness.records.files import json_safe, load_record, package_versions, write_record
from knowundo_bench.harness.records.schema import (
    CurvePoint,
    GuardRecord,
    LocalizerRecord,
    Metrics,
    PromptRecord,
    ResultRecord,
    RunIdentity,
    ScopeMetrics,
    TrainingSummary,
    VanillaRecord,
)
from knowundo_bench.harness.sharding import ShardingConfig
from knowundo_bench.harness.specs import ResolvedGuard, ResolvedMethod, ResolvedSpec
from knowundo_bench.harness.training import seed_everything
from knowundo_bench.harness.vanilla import (
    VanillaModel,
    build_encoder,
    cache_root,
    prepare_vanilla,
    vanilla_key,
)


@dataclass
class RunOutcome:
    output_dir: Path
    records: dict[str, Path] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)  # finished units a previous run left
    vanilla_reused: bool = False
    target_missed: list[str] = field(default_factory=list)  # vanilla units below vanilla.target_accuracy


@dataclass(frozen=True)
class Unit:
    """One unit of work with its own record: a vanilla model, or one method at one seed."""

    label: str  # the record's file name: "vanilla", "<label>", or "<label>@<seed>" with `seeds`
    order: int  # leaderboard position of its row (vanilla 0, methods in spec order)
    run_seed: int  # the seed this unit runs with (its method seed derives from it and the label)
    vanilla_seed: int  # the seed of the vanilla model it starts from
    method: ResolvedMethod | None = None  # None: the vanilla model itself


def plan_units(resolved: ResolvedSpec) -> list[Unit]:
    """Vanilla units first (one, or one per seed with ``vanilla.per_seed``), then each
    method once per seed in spec order."""
    spec = resolved.spec
    all_seeds = sorted({s for m in resolved.methods for s in (m.seeds or (spec.seed,))} | set(spec.seeds or ()))
    per_seed = spec.vanilla.per_seed and bool(all_seeds)
    units = (
        [Unit(f"vanilla@{s}", 0, s, s) for s in all_seeds] if per_seed else [Unit("vanilla", 0, spec.seed, spec.seed)]
    )
    for order, method in enumerate(resolved.methods, start=1):
        if method.seeds is None:
            units.append(Unit(method.label, order, spec.seed, spec.seed, method))
            continue
        for seed in method.seeds:
            units.append(Unit(f"{method.label}@{seed}", order, seed, seed if per_seed else spec.seed, method))
    return units


def derived_seed(run_seed: int, label: str) -> int:
    """A method's seed: a stable hash of the run seed and the method's label, so that adding,
    removing or reordering methods leaves every other method's numbers unchanged."""
    digest = hashlib.sha256(f"{run_seed}:{label}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def spec_hash(resolved: ResolvedSpec) -> str:
    """The resolved spec's content, without where it writes and where and on how many
    threads it runs."""
    echo = resolved.spec.model_dump(mode="json", exclude={"output_dir", "cache_dir", "threads", "execution"})
    return hashlib.sha256(json.dumps(echo, sort_keys=True).encode()).hexdigest()[:16]


def model_label(resolved: ResolvedSpec) -> str:
    """The model source, with the model's name or file where the source has one."""
    params = resolved.model_params.model_dump(mode="json")
    name = next((params[key] for key in ("name_or_path", "file", "path") if params.get(key)), None)
    return resolved.spec.model.source if name is None else f"{resolved.spec.model.source}:{name}"


@lru_cache(maxsize=1)
def harness_commit() -> str | None:
    """The git commit of the harness checkout this runs from ("+dirty" with local changes),
    or None when installed from a wheel."""
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit


def load_benchmark(resolved: ResolvedSpec, plugins: Plugins) -> Benchmark:
    spec = resolved.spec
    source = plugins.data_sources.get(spec.data.source, "data.source")
    with reported_as_input(f"data ({spec.data.source}): cannot load the data"):
        pairs = source.load(resolved.data_params, spec.data.domain)
    if spec.data.instances is not None:
        pairs = first_instances(pairs, spec.data.instances)
    benchmark = Benchmark(tuple(pairs))
    benchmark.check_complete(f"data ({spec.data.source})")
    return benchmark


def load_ood_retain(resolved: ResolvedSpec, plugins: Plugins, benchmark: Benchmark) -> list[RetainText]:
    """The out-of-distribution retain passages, checked to hold no benchmark text."""
    spec = resolved.spec.ood_retain
    source = f"ood_retain ({spec.source})"
    with reported_as_input(f"{source}: cannot load the passages"):
        texts = list(plugins.ood_sources.get(spec.source, "ood_retain.source").load(resolved.ood_params))
    if not texts:
        raise InputError("the source returned no passages", source=source)
    if spec.max_examples is not None and len(texts) > spec.max_examples:
        texts = random.Random(resolved.spec.seed).sample(texts, spec.max_examples)
    check_out_of_distribution(texts, benchmark.pairs, source)
    return texts


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


def guard_record(guard: ResolvedGuard, metrics: Metrics, details: dict[str, Any]) -> GuardRecord:
    """The guard's parameters, what its fit recorded, and its own accuracy (percent) on
    the val requests: the Unlearn Scope's it should refuse, the Retention Scope's it
    should let through; plain and per prompt prefix."""

    def accuracy(unlearn: ScopeMetrics, retention: ScopeMetrics) -> dict[str, float]:
        return {"unlearn": unlearn.refusal_rate or 0.0, "retention": 100.0 - (retention.refusal_rate or 0.0)}

    return GuardRecord.model_validate(
        {
            **details,
            "name": guard.info.name,
            "params": guard.params.model_dump(mode="json"),
            "accuracy": accuracy(metrics.unlearn, metrics.retention),
            "prefixed_accuracy": {
                name: accuracy(prefixed.unlearn, prefixed.retention)
                for name, prefixed in metrics.prompt_prefixes.items()
            },
        }
    )


def curve_point(step: int, metrics: Metrics) -> CurvePoint:
    return CurvePoint(
        step=step,
        unlearn_success=metrics.unlearn.success,
        retention_success=metrics.retention.success,
        unlearn_ppl=metrics.unlearn.ppl,
        retention_ppl=metrics.retention.ppl,
    )


# What a spec that leaves out `model:` or `data:` runs, said once in the log.
DEFAULT_NOTES = {
    "model": "model: not set, using the embedded tiny model (a ~1M-parameter Llama trained here)",
    "data": "data: not set, using the embedded synthetic fictitious authors (privacy domain)",
}

SAMPLES_DIR = "samples"
SUPERSEDED_DIR = "superseded"  # records of units a spec no longer has


def write_samples(
    path: Path,
    benchmark: Benchmark,
    plain: tuple[ScopeScores, ScopeScores],
    prefixed: dict[str, tuple[ScopeScores, ScopeScores]],
) -> None:
    """One JSON line per val question: its scope, question and reference answer, and for
    the plain prompt and each prompt prefix the greedy generation, teacher-forced token
    accuracy (0-100) and mean answer NLL."""

    def reading(scores: ScopeScores, index: int) -> dict[str, Any]:
        return {
            "generation": scores.generations[index] if scores.generations else None,
            "token_accuracy": scores.example_accuracy[index],
            "answer_nll": scores.example_nll[index],
        }

    lines = []
    for position, (scope, pairs) in enumerate(
        (("unlearn", benchmark.unlearn_val), ("retention", benchmark.retention_val))
    ):
        for index, pair in enumerate(pairs):
            line = {
                "scope": scope,
                "index": index,
                "question": pair.question,
                "reference": pair.answer,
                "plain": reading(plain[position], index),
                "prefixes": {name: reading(scores[position], index) for name, scores in prefixed.items()},
            }
            lines.append(json.dumps(json_safe(line), ensure_ascii=False, allow_nan=False))
    atomic_write_text(path, "\n".join(lines) + "\n")


def output_directory(resolved: ResolvedSpec, override: Path | None) -> Path:
    directory = override or resolved.spec.output_dir or Path("results") / resolved.spec.name
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"  # one per process (several may start together)
        probe.write_text("")
        probe.unlink(missing_ok=True)
    except OSError as error:
        raise InputError(f"output directory not writable ({error.strerror})", source=str(directory)) from None
    return directory


class Runner:
    """One run of a spec: its units (vanilla models, then each method at each seed), each
    from the same vanilla weights.

    :meth:`run` goes through explicit phases: :meth:`load_inputs` (benchmark and retain
    data), :meth:`claim_directory` (an output directory holds one spec),
    :meth:`reusable_units` (records a previous run finished with the same inputs),
    :meth:`prepare_model` (a vanilla model, its encoders and record), then
    :meth:`run_method` per method unit. Every attribute exists from the constructor on.
    """

    def __init__(
        self, resolved: ResolvedSpec, plugins: Plugins, output_dir: Path, board: ProgressBoard, force: bool = False
    ) -> None:
        self.force = force
        self.resolved = resolved
        self.spec = resolved.spec
        self.plugins = plugins
        self.output_dir = output_dir
        self.board = board
        self.versions = package_versions()
        self.units = plan_units(resolved)
        self.spec_hash = spec_hash(resolved)
        # set by the phases of run()
        self.benchmark: Benchmark | None = None
        self.retain_sets: dict[str, list[QAPair] | list[RetainText]] = {
            "in_distribution": [],
            "out_of_distribution": [],
        }
        self.unit_keys: dict[str, str] = {}
        self.vanilla: VanillaModel | None = None
        self.encoder: PromptEncoder | None = None
        self.prefixed_encoders: dict[str, PromptEncoder] = {}  # one per prompt prefix, each caching its encodings
        self.vanilla_metrics: Metrics | None = None
        self.last_localization: Localization | None = None  # the latest method's (knowundo_bench.testing reads it)
        self.device: torch.device | None = None
        self.factory: ModelFactory | None = None
        self.done: dict[str, ResultRecord] = {}  # reusable records
        self.pending: list[PendingUnit] = []  # what the executor runs
        self.outcome = RunOutcome(output_dir)  # filled as units finish (an interrupted run reports it)
        self.main = distributed.is_main()  # of a multi-process run: the one that evaluates and writes

    def model_factory(self) -> ModelFactory:
        """The model source's factory, made before any data is read, so that a model that
        cannot be had (a missing folder, a hub name neither cached nor reachable) fails first."""
        source = self.plugins.model_sources.get(self.spec.model.source, "model.source")
        with reported_as_input(f"model ({self.spec.model.source}): cannot prepare the model"):
            self.factory = source.factory(self.resolved.model_params, cache_root(self.resolved))
        return self.factory

    def check_device(self) -> torch.device:
        """``model.device`` on this machine, or one line naming the spec and the field."""
        try:
            self.device = resolve_device(self.spec.model.device)
        except InputError as error:
            raise InputError(
                str(error), source=None if self.resolved.path is None else str(self.resolved.path)
            ) from None
        return self.device

    def plugin_origin(self, plugin: object) -> str:
        origin = self.plugins.origin(plugin)
        return f"knowundo-bench {__version__}" if origin == "built-in" else origin

    def identity(self, unit: Unit) -> RunIdentity:
        assert self.benchmark is not None, "load_inputs runs first"
        method = unit.method
        return RunIdentity(
            spec_name=self.spec.name,
            spec_hash=self.spec_hash,
            data_source=self.spec.data.source,
            data_hash=self.benchmark.fingerprint(),
            model=model_label(self.resolved),
            seed=unit.run_seed,
            harness_version=__version__,
            method_plugin=None if method is None else self.plugin_origin(method.plugin),
            localizer_plugin=None
            if method is None or method.localizer is None
            else self.plugin_origin(method.localizer.plugin),
            git_commit=harness_commit(),
        )

    def record(self, unit: Unit, **fields: Any) -> Path:
        if not self.main:  # one writer: the main process
            return self.output_dir / f"{unit.label}.json"
        record = ResultRecord(
            run=self.spec.name,
            method="vanilla" if unit.method is None else unit.method.label,
            unit=unit.label,
            order=unit.order,
            seed=unit.run_seed,
            identity=self.identity(unit),
            spec=self.resolved.echo(),
            versions=self.versions,
            finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
            overrides=list(self.resolved.overrides),
            **fields,
        )
        return write_record(self.output_dir, unit.label, record)

    def evaluate(
        self,
        label: str,
        model: torch.nn.Module,
        encoder: PromptEncoder,
        benchmark: Benchmark,
        guard: NamedGuard | None = None,
    ) -> Metrics:
        """Scope metrics, again under each prompt prefix (Finding 2), and general tasks;
        with ``eval.log_samples`` each val question's readings go to samples/<label>.jsonl.
        Behind a ``guard`` the scope metrics are the guarded model's (the general tasks
        are the model's own)."""
        spec = self.spec.eval
        work = evaluation_work(benchmark, spec) * (1 + len(spec.prompt_prefixes))
        with self.board.task(f"evaluate {label}", work) as reporter:
            plain = evaluate_scopes(model, encoder, benchmark, spec, reporter, generate=spec.log_samples, guard=guard)
            metrics = scope_metrics(*plain)
            metrics["prompt_prefixes"] = {}
            prefixed_scores = {}
            for name, prefixed_encoder in self.prefixed_encoders.items():
                prefixed_scores[name] = evaluate_scopes(
                    model, prefixed_encoder, benchmark, spec, reporter, generate=spec.log_samples, guard=guard
                )
                prefixed = scope_metrics(*prefixed_scores[name])
                metrics["prompt_prefixes"][name] = {
                    "system_prompt": spec.prompt_prefixes[name],
                    **{key: prefixed[key] for key in ("unlearn", "retention", "avg_success")},
                }
        if spec.log_samples:
            write_samples(self.output_dir / SAMPLES_DIR / f"{label}.jsonl", benchmark, plain, prefixed_scores)
        if spec.general is not None:
            loading = reported_as_input("eval.general: cannot run the general tasks")
            with self.board.task(f"general tasks {label}", len(spec.general.tasks)) as reporter, loading:
                scores = evaluate_general(model, encoder.tokenizer, spec.general, spec.general_data_dir, self.spec.seed)
                reporter.advance(len(spec.general.tasks))
            metrics["general"] = {**scores, "general_avg": general_average(scores)}
        return Metrics.model_validate(metrics)

    def curve_recorder(
        self, model: torch.nn.Module, encoder: PromptEncoder, benchmark: Benchmark, start: Metrics
    ) -> tuple[list[CurvePoint] | None, Callable[[int], None] | None]:
        """Scope metrics every ``eval.every_n_steps`` optimizer steps (Figure 4), from the
        vanilla model's (step 0); None when curves are off."""
        every = self.spec.eval.every_n_steps
        if every is None or not self.main:  # the main process evaluates
            return None, None
        quick = self.spec.eval.model_copy(update={"rouge": False})
        curve = [curve_point(0, start)]

        def after_step(step: int) -> None:
            if step % every == 0:
                curve.append(curve_point(step, Metrics.model_validate(evaluate(model, encoder, benchmark, quick))))

        return curve, after_step

    def method_seed(self, method: ResolvedMethod, run_seed: int | None = None) -> int:
        """Derived from the run seed and the method's label (:func:`derived_seed`); an
        ablation control shares its localised method's seed (same batches, same initial state)."""
        return derived_seed(
            self.spec.seed if run_seed is None else run_seed, method.seed_label or method.ablation_of or method.label
        )

    def run_method(
        self,
        method: ResolvedMethod,
        vanilla: VanillaModel,
        encoder: PromptEncoder,
        benchmark: Benchmark,
        run_seed: int | None = None,
        unit_label: str | None = None,
    ) -> dict[str, Any]:
        """Localise (if asked), unlearn and evaluate one method; returns its record's fields
        (in a process other than the main one of a multi-process run, only its status)."""
        assert self.vanilla_metrics is not None or not self.main, "prepare_model runs first"
        model = vanilla.bundle.model
        seed = self.method_seed(method, run_seed)
        seed_everything(seed)
        curve, after_step = self.curve_recorder(model, encoder, benchmark, self.vanilla_metrics)  # type: ignore[arg-type]
        context = UnlearnContext(
            encoder=encoder,
            seed=seed,
            domain=self.spec.data.domain,
            mixed_precision=self.spec.model.mixed_precision,
            board=self.board,
            label=unit_label or method.label,
            after_step=after_step,
            warmup_steps=self.spec.efficiency.warmup_steps,
        )
        retain = self.retain_sets[method.info.retain]
        guard, guard_context = None, None
        if method.guard is not None and self.main:  # fitted on the vanilla model, before unlearning
            guard_context = GuardContext(
                model=model, encoder=encoder, forget=benchmark.forget, retain=benchmark.retain, seed=seed
            )
            python_state = random.getstate()
            # the fit draws from its own RNG streams: the unlearning run is its unguarded twin's
            with self.board.task(f"fit guard {method.guard.info.name}", 1) as reporter, torch.random.fork_rng():
                fitted = method.guard.info.fit(method.guard.params, guard_context)
                reporter.advance(1)
            random.setstate(python_state)
            if not isinstance(fitted, Guard):
                raise RuntimeError(f"guard {method.guard.info.name!r}: fit returned no guard (refusal, refuses)")
            guard = NamedGuard(method.guard.info.name, fitted)
        localizer = None
        self.last_localization = None
        if method.localizer is not None:
            run = LocalizerRun(method.localizer.info.name, method.localizer.params, seed)
            localization: Localization = self.plugins.call_on(
                method.localizer.plugin,
                "localize",
                self.plugins.localizers,
                localizer=run,
                model=model,
                forget=benchmark.forget,
                retain=retain,
                context=context,
            )
            context.trainable = set(localization.selected)
            context.row_masks = dict(localization.row_masks)
            self.last_localization = localization
            localizer = LocalizerRecord.model_validate(
                {
                    "name": method.localizer.info.name,
                    "params": method.localizer.params.model_dump(mode="json"),
                    "selected": localization.selected,
                    **localization.details,
                }
            )
        report: TrainingReport = self.plugins.call_on(
            method.plugin,
            "unlearn",
            self.plugins.methods,
            method=MethodRun(method.info.name, method.label, method.params, seed),
            model=model,
            forget=benchmark.forget,
            retain=retain,
            context=context,
        )
        if not self.main:
            return {"status": "ok", "method_name": method.info.name}
        metrics = self.evaluate(unit_label or method.label, model, encoder, benchmark, guard)
        guarded = None
        if method.guard is not None and guard_context is not None:
            guarded = guard_record(method.guard, metrics, guard_context.details)
        if curve is not None and curve[-1].step != len(report.step_seconds):
            last = metrics
            if guard is not None:  # curve points are the model's own, unguarded
                quick = self.spec.eval.model_copy(update={"rouge": False})
                last = Metrics.model_validate(evaluate(model, encoder, benchmark, quick))
            curve.append(curve_point(len(report.step_seconds), last))
        faults = numerical_faults(report.step_losses, metrics)
        training = TrainingSummary.model_validate(
            {
                **report.summary(peak_flops(next(model.parameters()).device, self.spec.efficiency)),
                "step_seconds": report.step_seconds,
                "step_peak_mem_gb": report.step_peak_mem_gb,
                "step_tokens": report.step_tokens,
                "step_losses": report.step_losses,
            }
        )
        return {
            "status": "nonfinite" if faults else "ok",
            "numerical_faults": faults,
            "method_name": method.info.name,
            "ablation_of": method.ablation_of,
            "method_seed": seed,
            "retain_data": method.info.retain,
            "params": method.params.model_dump(mode="json"),
            "localizer": localizer,
            "guard": guarded,
            "training": training,
            "metrics": metrics,
            "curve": curve,
        }

    def unit_key(self, vanilla_key: str, unit: Unit) -> str:
        """What a finished unit's result depends on (inputs, seeds, the harness's and the
        providing plugins' versions); a rerun reuses a record with the same key."""
        identity: dict[str, Any] = {
            "vanilla": vanilla_key,
            "eval": self.spec.eval.model_dump(mode="json", exclude={"log_samples"}),
            "knowundo_bench": __version__,
        }
        method = unit.method
        if method is not None:
            identity.update(
                method=method.info.name,
                label=method.label,
                seed=self.method_seed(method, unit.run_seed),
                params=method.params.model_dump(mode="json"),
                retain=method.info.retain,
                efficiency=self.spec.efficiency.model_dump(mode="json"),
                localizer=None
                if method.localizer is None
                else [method.localizer.info.name, method.localizer.params.model_dump(mode="json")],
                ood=self.spec.ood_retain.model_dump(mode="json")
                if method.info.retain == "out_of_distribution"
                else None,
                plugins=[
                    self.plugin_origin(method.plugin),
                    None if method.localizer is None else self.plugin_origin(method.localizer.plugin),
                ],
            )
            if method.guard is not None:  # only then, so that unguarded units keep their keys
                identity["guard"] = [
                    method.guard.info.name,
                    method.guard.params.model_dump(mode="json"),
                    self.plugin_origin(method.guard.plugin),
                ]
        return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]

    def claim_directory(self) -> None:
        """An output directory holds one spec's records: another spec's make this run fail
        (one line), unless ``force``, which removes them. Records of this spec's units
        that the spec no longer has (a method removed, seeds changed) move to
        ``superseded/``, so that the leaderboard shows only this run's units."""
        others = {}
        planned = {unit.label for unit in self.units}
        stale = []
        for path in sorted(self.output_dir.glob("*.json")):
            record = load_record(path)
            if record is None:
                continue
            if record.run is not None and record.run != self.spec.name:
                others[path] = record.run
            elif path.stem not in planned:
                stale.append(path)
        if stale and (self.force or not others):
            superseded = self.output_dir / SUPERSEDED_DIR
            superseded.mkdir(exist_ok=True)
            for path in stale:
                target, copy = superseded / path.name, 1
                while target.exists():  # an earlier move kept the same name: keep both
                    target, copy = superseded / f"{path.stem}.{copy}{path.suffix}", copy + 1
                os.replace(path, target)
            self.board.log(
                f"moved {len(stale)} records of units this spec no longer has to {superseded}: "
                + ", ".join(path.stem for path in stale)
            )
        if not others:
            return
        names = ", ".join(sorted({repr(name) for name in others.values()}))
        if not self.force:
            raise InputError(
                f"holds results of spec {names}, not of {self.spec.name!r}; use another --output, "
                "or --force to replace them",
                source=str(self.output_dir),
            )
        for path in others:
            path.unlink()
        self.board.log(f"--force: removed {len(others)} records of spec {names}")

    def reusable_record(self, unit: Unit, key: str) -> ResultRecord | None:
        """The record of ``unit`` if a previous run finished it with these inputs (saying
        why when a record exists but its inputs changed)."""
        if self.force:
            return None
        record = load_record(self.output_dir / f"{unit.label}.json")
        if record is None:
            return None
        samples_missing = (
            self.spec.eval.log_samples and not (self.output_dir / SAMPLES_DIR / f"{unit.label}.jsonl").is_file()
        )
        if record.unit_key == key and record.finished and not samples_missing:
            return record
        if record.unit_key != key and record.identity is not None and unit.method is not None:
            now = self.identity(unit)
            changed = [
                f"{what} {before} -> {after}"
                for what, before, after in (
                    ("method plugin", record.identity.method_plugin, now.method_plugin),
                    ("localizer plugin", record.identity.localizer_plugin, now.localizer_plugin),
                    ("knowundo-bench", record.identity.harness_version, now.harness_version),
                )
                if before != after
            ]
            if changed:
                self.board.log(f"recomputing {unit.label}: {'; '.join(changed)}")
        return None

    def load_inputs(self) -> Benchmark:
        """Phase 1: the benchmark, and the retain data of each kind (loaded before any
        training, so that bad input fails fast)."""
        for section in self.resolved.defaulted:
            self.board.log(DEFAULT_NOTES[section])
        benchmark = load_benchmark(self.resolved, self.plugins)
        self.board.log(
            f"data: {len(benchmark.instances)} instances, forget {len(benchmark.forget)}, retain "
            f"{len(benchmark.retain)}, val {len(benchmark.unlearn_val)}+{len(benchmark.retention_val)}"
        )
        general = self.spec.eval.general
        if general is not None and self.spec.eval.general_data_dir is not None:
            offline_task_configs(list(general.tasks), self.spec.eval.general_data_dir)  # missing files: fail now
        elif general is not None:
            require_hub("eval.general (lm-eval's tasks read the hub; eval.general_data_dir reads local files)")
        self.retain_sets["in_distribution"] = benchmark.retain
        if self.resolved.needs_ood_retain:
            ood = load_ood_retain(self.resolved, self.plugins, benchmark)
            self.retain_sets["out_of_distribution"] = ood
            self.board.log(f"out-of-distribution retain data: {len(ood)} passages ({self.spec.ood_retain.source})")
        self.benchmark = benchmark
        return benchmark

    def reusable_units(self, benchmark: Benchmark, clean: bool = True) -> dict[str, ResultRecord]:
        """Phase 2: each unit's key, and the records a previous run finished with them
        (``clean``: first remove what an interrupted run left half-written; never in a
        worker, whose siblings may be writing)."""
        for leftover in remove_stale_temporaries(self.output_dir, "*.json") if clean else []:
            self.board.log(f"removed a half-written file from an interrupted run: {leftover.name}")
        rewrite = clean
        self.unit_keys = {
            unit.label: self.unit_key(vanilla_key(self.resolved, benchmark, unit.vanilla_seed), unit)
            for unit in self.units
        }
        done = {}
        for unit in self.units:
            record = self.reusable_record(unit, self.unit_keys[unit.label])
            if record is None:
                continue
            if record.order != unit.order:  # methods reordered: the table follows the spec
                record = record.model_copy(update={"order": unit.order})
                if rewrite:
                    write_record(self.output_dir, unit.label, record)
            done[unit.label] = record
        return done

    def prepare_model(
        self,
        benchmark: Benchmark,
        done: dict[str, ResultRecord],
        outcome: RunOutcome,
        vanilla_unit: Unit | None = None,
    ) -> VanillaModel:
        """Phase 3: a vanilla model (cached or trained; the first vanilla unit's unless
        given), its encoders, and its record (or its metrics from a reusable one)."""
        unit = vanilla_unit or self.units[0]
        device = self.device or self.check_device()
        factory = self.factory or self.model_factory()
        started = time.perf_counter()
        vanilla = prepare_vanilla(self.resolved, factory, benchmark, device, self.board, unit.vanilla_seed)
        outcome.vanilla_reused = vanilla.reused
        self.board.log(
            f"vanilla model {'reused from cache' if vanilla.reused else 'trained and cached'}: {vanilla.path}"
        )
        if vanilla.target_met is False:
            self.board.log(
                f"{unit.label} model missed its target accuracy: {vanilla.accuracy:.2f}% < "
                f"{self.spec.vanilla.target_accuracy}% (raise vanilla.epochs or lr; results below start from it)",
                style="yellow",
            )
        encoder = build_encoder(self.resolved, vanilla.bundle.tokenizer)
        self.prefixed_encoders = {
            name: encoder.with_prefix(system_prompt=text) for name, text in self.spec.eval.prompt_prefixes.items()
        }
        self.vanilla, self.encoder = vanilla, encoder
        reused = done.get(unit.label)
        if reused is not None and reused.metrics is not None:
            self.vanilla_metrics = reused.metrics
        elif not self.main:
            self.vanilla_metrics = None
        else:
            self.vanilla_metrics = self.evaluate(unit.label, vanilla.bundle.model, encoder, benchmark)
            outcome.records[unit.label] = self.record(
                unit,
                method_name="vanilla",
                status="ok",
                unit_key=self.unit_keys[unit.label],
                metrics=self.vanilla_metrics,
                vanilla=self.vanilla_record(),
                prompt=PromptRecord(
                    format=encoder.prompt_format,
                    chat_template=encoder.uses_chat_template,
                    max_length=encoder.max_length,
                ),
                wall_seconds=time.perf_counter() - started,
            )
        return vanilla

    def vanilla_record(self) -> VanillaRecord:
        assert self.vanilla is not None
        return VanillaRecord(
            key=self.vanilla.key,
            path=str(self.vanilla.path),
            reused=self.vanilla.reused,
            training=self.vanilla.training,
            seed=self.vanilla.seed,
            target_accuracy=self.spec.vanilla.target_accuracy,
            accuracy=self.vanilla.accuracy,
            target_met=self.vanilla.target_met,
        )

    def run(self) -> RunOutcome:
        """The whole suite: what can be reused is, the rest goes to the spec's executor."""
        outcome = self.outcome
        processes = distributed.world_size()
        if processes > 1:
            distributed.check_supported()
            if self.resolved.executor is not None and not self.resolved.executor.info.in_process:
                raise InputError(
                    f"execution.executor: {self.resolved.executor.info.name!r} under a multi-process launch "
                    "(each process would submit the whole suite); use the local executor"
                )
        distributed.start()
        if processes > 1:
            how = "sharded (FSDP2)" if ShardingConfig.from_environment() else "data-parallel"
            self.board.log(f"each unit {how} over {processes} processes")
        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        self.prepare_process(self.spec.threads or max(1, (os.cpu_count() or 1) // local_processes))
        executor = self.resolved.executor
        in_process = executor is None or executor.info.in_process
        if in_process and (self.force or not any(self.output_dir.glob("*.json"))):
            self.check_device()  # a fresh run: an unavailable device or model fails before any data is read
            self.model_factory()
        benchmark = self.load_inputs()
        if self.main:
            self.claim_directory()
        self.done = self.reusable_units(benchmark, clean=self.main)
        distributed.barrier()  # every process sees the same records
        for label in self.done:
            outcome.records[label] = self.output_dir / f"{label}.json"
            outcome.reused.append(label)
        if self.done:
            self.board.log(f"reused finished results: {', '.join(self.done)} (--force recomputes)")
        self.pending = self.pending_units()
        if self.pending:
            if in_process:  # work to do here (a finished run's table needs neither)
                self.device = self.device or self.check_device()
                self.factory = self.factory or self.model_factory()
            if executor is None:
                self.run_here([unit.label for unit in self.pending])
            else:
                self.plugins.call_executor(executor, suite=self)
        for unit in self.units:  # a vanilla model below its target, whoever trained it
            record = load_record(self.output_dir / f"{unit.label}.json") if unit.method is None else None
            if record is not None and record.vanilla is not None and record.vanilla.target_met is False:
                outcome.target_missed.append(unit.label)
        return outcome

    def prepare_process(self, threads: int) -> None:
        transformers.utils.logging.disable_progress_bar()  # our own bars only
        torch.set_num_threads(threads)

    def pending_units(self) -> list[PendingUnit]:
        """The units without a reusable record, vanilla units first, each method's with
        its expected cost (median wall seconds of earlier records of the same method)."""
        costs = earlier_costs(self.output_dir)
        vanilla_of = {unit.run_seed: unit.label for unit in self.units if unit.method is None}
        return [
            PendingUnit(
                label=unit.label,
                vanilla=unit.label if unit.method is None else vanilla_of[unit.vanilla_seed],
                method=None if unit.method is None else unit.method.info.name,
                expected_seconds=costs.get(unit.label if unit.method is None else unit.method.label),
            )
            for unit in self.units
            if unit.label not in self.done
        ]

    def run_here(self, labels: Sequence[str]) -> list[UnitResult]:
        """Run these units in this process: per vanilla model (trained or loaded once),
        its units in spec order, each from the same vanilla weights."""
        assert self.benchmark is not None, "load_inputs runs first"
        benchmark, wanted, results = self.benchmark, set(labels), []
        for vanilla_unit in [unit for unit in self.units if unit.method is None]:
            group = [
                u
                for u in self.units
                if u.method is not None and u.vanilla_seed == vanilla_unit.run_seed and u.label in wanted
            ]
            if vanilla_unit.label not in wanted and not group:
                continue
            started = time.perf_counter()
            vanilla = self.prepare_model(benchmark, self.done, self.outcome, vanilla_unit)
            distributed.barrier()
            if vanilla_unit.label in wanted:
                results.append(UnitResult(vanilla_unit.label, "ok", time.perf_counter() - started))
            assert self.encoder is not None
            snapshot = ModelSnapshot(vanilla.bundle.model)
            for unit in group:
                results.append(self.run_unit(unit, vanilla, benchmark))
                snapshot.restore(vanilla.bundle.model)
                distributed.barrier()  # the other processes wait while the main one evaluates
        return results

    def run_unit(self, unit: Unit, vanilla: VanillaModel, benchmark: Benchmark) -> UnitResult:
        """One method unit from the vanilla weights, its record written whatever happens."""
        assert unit.method is not None and self.encoder is not None
        started = time.perf_counter()
        try:
            fields = self.run_method(unit.method, vanilla, self.encoder, benchmark, unit.run_seed, unit.label)
        except Exception as error:  # one failing method must not lose the others
            if distributed.world_size() > 1:
                raise  # the other processes may be inside a collective: stop them all (rerunning resumes)
            self.board.log(f"method {unit.label} failed: {type(error).__name__}: {error}", style="red")
            fields = {
                "method_name": unit.method.info.name,
                "status": "failed",
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(),
            }
        if fields["status"] == "nonfinite":
            self.board.log(f"method {unit.label}: {'; '.join(fields['numerical_faults'])}", style="yellow")
        seconds = time.perf_counter() - started
        self.outcome.records[unit.label] = self.record(
            unit,
            **fields,
            unit_key=self.unit_keys[unit.label],
            vanilla=self.vanilla_record(),
            wall_seconds=seconds,
        )
        result = UnitResult(unit.label, fields["status"], seconds, fields.get("error"))
        if result.status == "failed":
            self.outcome.failed.append(unit.label)
        return result

    def finished(self, result: UnitResult) -> None:
        """A unit that ran elsewhere: its record is on disk."""
        self.outcome.records[result.label] = self.output_dir / f"{result.label}.json"
        if result.status == "failed" and result.label not in self.outcome.failed:
            self.outcome.failed.append(result.label)

    def record_failure(self, label: str, error: str) -> None:
        """A ``failed`` record for a unit whose worker died more often than it may retry
        (unless the unit's finished record made it to disk before its worker died)."""
        unit = next(unit for unit in self.units if unit.label == label)
        written = load_record(self.output_dir / f"{label}.json")
        if written is not None and written.finished and written.unit_key == self.unit_keys.get(label):
            self.finished(UnitResult(label, written.status, written.wall_seconds or 0.0))
            return
        self.outcome.records[label] = self.record(
            unit,
            method_name="vanilla" if unit.method is None else unit.method.info.name,
            status="failed",
            error=error,
            unit_key=self.unit_keys.get(label),
        )
        if label not in self.outcome.failed:
            self.outcome.failed.append(label)

    @property
    def payload(self) -> SuitePayload:
        return SuitePayload(
            spec=self.resolved.echo(),
            source=str(self.resolved.path or "spec"),
            overrides=self.resolved.overrides,
            output_dir=str(self.output_dir.absolute()),  # workers may start in another directory
            cache_dir=str(cache_root(self.resolved).absolute()),
        )


def earlier_costs(directory: Path) -> dict[str, float]:
    """Median wall seconds per label (method label, or "vanilla") over the finished
    records in ``directory`` and its ``superseded/`` folder: what longest-first
    scheduling expects a unit to cost."""
    seconds: dict[str, list[float]] = {}
    for path in [*directory.glob("*.json"), *(directory / SUPERSEDED_DIR).glob("*.json")]:
        record = load_record(path)
        if record is not None and record.finished and record.wall_seconds:
            label = "vanilla" if record.method_name == "vanilla" else record.method
            seconds.setdefault(label, []).append(record.wall_seconds)
    return {label: statistics.median(values) for label, values in seconds.items()}


def run_in_worker(payload: SuitePayload, labels: Sequence[str], threads: int, *after: object) -> list[UnitResult]:
    """A worker process's entry point (Ray tasks): rebuild the suite from ``payload`` and
    run ``labels`` there, reusing the records other units wrote (the vanilla unit's,
    whose task ran first: ``after`` holds its result, so the scheduler waits for it)."""
    import dataclasses

    from knowundo_bench.harness.plugin_manager import get_plugins
    from knowundo_bench.harness.specs import parse_spec

    plugins = get_plugins()
    spec = {**payload.spec, "cache_dir": payload.cache_dir}  # the cache the driver checked, not this $HOME's
    resolved = dataclasses.replace(parse_spec(spec, plugins, payload.source), overrides=payload.overrides)
    with ProgressBoard(enabled=False) as board:
        runner = Runner(resolved, plugins, Path(payload.output_dir), board)
        runner.prepare_process(resolved.spec.threads or threads)
        runner.check_device()
        benchmark = runner.load_inputs()
        runner.done = {
            label: record
            for label, record in runner.reusable_units(benchmark, clean=False).items()
            if label not in labels
        }
        return runner.run_here(labels)
