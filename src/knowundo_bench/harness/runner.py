"""Runs a resolved spec end to end: data, vanilla model, each method, result records."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import transformers

from knowundo_bench import __version__
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
from knowundo_bench.harness.errors import InputError
from knowundo_bench.harness.evaluation import evaluate, evaluation_work
from knowundo_bench.harness.general import (
    evaluate_general,
    general_average,
    offline_task_configs,
)
from knowundo_bench.harness.models import ModelSnapshot, resolve_device
from knowundo_bench.harness.plugin_manager import Plugins
from knowundo_bench.harness.progress import ProgressBoard
from knowundo_bench.harness.records.atomic import remove_stale_temporaries
from knowundo_bench.harness.records.files import load_record, package_versions, write_record
from knowundo_bench.harness.records.schema import (
    CurvePoint,
    LocalizerRecord,
    Metrics,
    PromptRecord,
    ResultRecord,
    TrainingSummary,
    VanillaRecord,
)
from knowundo_bench.harness.specs import ResolvedMethod, ResolvedSpec
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


def load_benchmark(resolved: ResolvedSpec, plugins: Plugins) -> Benchmark:
    spec = resolved.spec
    source = plugins.data_sources.get(spec.data.source, "data.source")
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
        values = {k: v for k, v in readings.items() if isinstance(v, float) and math.isnan(v)}
        if values:
            faults.append(f"{scope} metrics are NaN: {', '.join(values)}")
    return faults


def curve_point(step: int, metrics: Metrics) -> CurvePoint:
    return CurvePoint(
        step=step,
        unlearn_success=metrics.unlearn.success,
        retention_success=metrics.retention.success,
        unlearn_ppl=metrics.unlearn.ppl,
        retention_ppl=metrics.retention.ppl,
    )


def output_directory(resolved: ResolvedSpec, override: Path | None) -> Path:
    directory = override or resolved.spec.output_dir or Path("results") / resolved.spec.name
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise InputError(f"output directory not writable ({error.strerror})", source=str(directory)) from None
    return directory


class Runner:
    """One run of a spec; methods run one after another from the same vanilla weights.

    :meth:`run` goes through explicit phases: :meth:`load_inputs` (benchmark and retain
    data), :meth:`reusable_units` (records a previous run finished with the same inputs),
    :meth:`prepare_model` (vanilla model, encoders, vanilla record), then
    :meth:`run_method` per method. Every attribute exists from the constructor on.
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

    def record(self, label: str, order: int, **fields: Any) -> Path:
        record = ResultRecord(
            run=self.spec.name,
            method=label,
            order=order,
            seed=self.spec.seed,
            spec=self.resolved.echo(),
            versions=self.versions,
            finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
            **fields,
        )
        return write_record(self.output_dir, label, record)

    def evaluate(self, label: str, model: torch.nn.Module, encoder: PromptEncoder, benchmark: Benchmark) -> Metrics:
        """Scope metrics, again under each prompt prefix (Finding 2), and general tasks."""
        spec = self.spec.eval
        work = evaluation_work(benchmark, spec) * (1 + len(spec.prompt_prefixes))
        with self.board.task(f"evaluate {label}", work) as reporter:
            metrics = evaluate(model, encoder, benchmark, spec, reporter)
            metrics["prompt_prefixes"] = {}
            for name, prefixed_encoder in self.prefixed_encoders.items():
                prefixed = evaluate(model, prefixed_encoder, benchmark, spec, reporter)
                metrics["prompt_prefixes"][name] = {
                    "system_prompt": spec.prompt_prefixes[name],
                    **{key: prefixed[key] for key in ("unlearn", "retention", "avg_success")},
                }
        if spec.general is not None:
            with self.board.task(f"general tasks {label}", len(spec.general.tasks)) as reporter:
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
        if every is None:
            return None, None
        quick = self.spec.eval.model_copy(update={"rouge": False})
        curve = [curve_point(0, start)]

        def after_step(step: int) -> None:
            if step % every == 0:
                curve.append(curve_point(step, Metrics.model_validate(evaluate(model, encoder, benchmark, quick))))

        return curve, after_step

    def method_seed(self, method: ResolvedMethod) -> int:
        """spec seed + position among the spec's methods; an ablation control shares
        its localised method's seed (same batches, same initial state)."""
        labels = [m.label for m in self.resolved.methods if m.ablation_of is None]
        return self.spec.seed + labels.index(method.ablation_of or method.label) + 1

    def run_method(
        self, method: ResolvedMethod, vanilla: VanillaModel, encoder: PromptEncoder, benchmark: Benchmark
    ) -> dict[str, Any]:
        """Localise (if asked), unlearn and evaluate one method; returns its record's fields."""
        assert self.vanilla_metrics is not None, "prepare_model runs first"
        model = vanilla.bundle.model
        seed = self.method_seed(method)
        seed_everything(seed)
        curve, after_step = self.curve_recorder(model, encoder, benchmark, self.vanilla_metrics)
        context = UnlearnContext(
            encoder=encoder,
            seed=seed,
            domain=self.spec.data.domain,
            mixed_precision=self.spec.model.mixed_precision,
            board=self.board,
            label=method.label,
            after_step=after_step,
            warmup_steps=self.spec.efficiency.warmup_steps,
        )
        retain = self.retain_sets[method.info.retain]
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
        metrics = self.evaluate(method.label, model, encoder, benchmark)
        if curve is not None and curve[-1].step != len(report.step_seconds):
            curve.append(curve_point(len(report.step_seconds), metrics))
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
            "training": training,
            "metrics": metrics,
            "curve": curve,
        }

    def unit_key(self, vanilla_key: str, method: ResolvedMethod | None) -> str:
        """What a finished unit's result depends on; a rerun reuses a record with the same key."""
        identity: dict[str, Any] = {
            "vanilla": vanilla_key,
            "eval": self.spec.eval.model_dump(mode="json"),
            "knowundo_bench": __version__,
        }
        if method is not None:
            identity.update(
                method=method.info.name,
                label=method.label,
                seed=self.method_seed(method),
                params=method.params.model_dump(mode="json"),
                retain=method.info.retain,
                efficiency=self.spec.efficiency.model_dump(mode="json"),
                localizer=None
                if method.localizer is None
                else [method.localizer.info.name, method.localizer.params.model_dump(mode="json")],
                ood=self.spec.ood_retain.model_dump(mode="json")
                if method.info.retain == "out_of_distribution"
                else None,
            )
        return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]

    def finished(self, label: str, key: str) -> ResultRecord | None:
        """The record of ``label`` if a previous run finished it with these inputs."""
        if self.force:
            return None
        record = load_record(self.output_dir / f"{label}.json")
        if record is not None and record.unit_key == key and record.finished:
            return record
        return None

    def load_inputs(self) -> Benchmark:
        """Phase 1: the benchmark, and the retain data of each kind (loaded before any
        training, so that bad input fails fast)."""
        benchmark = load_benchmark(self.resolved, self.plugins)
        self.board.log(
            f"data: {len(benchmark.instances)} instances, forget {len(benchmark.forget)}, retain "
            f"{len(benchmark.retain)}, val {len(benchmark.unlearn_val)}+{len(benchmark.retention_val)}"
        )
        general = self.spec.eval.general
        if general is not None and self.spec.eval.general_data_dir is not None:
            offline_task_configs(list(general.tasks), self.spec.eval.general_data_dir)  # missing files: fail now
        self.retain_sets["in_distribution"] = benchmark.retain
        if self.resolved.needs_ood_retain:
            ood = load_ood_retain(self.resolved, self.plugins, benchmark)
            self.retain_sets["out_of_distribution"] = ood
            self.board.log(f"out-of-distribution retain data: {len(ood)} passages ({self.spec.ood_retain.source})")
        self.benchmark = benchmark
        return benchmark

    def reusable_units(self, benchmark: Benchmark) -> dict[str, ResultRecord]:
        """Phase 2: each unit's key, and the records a previous run finished with them."""
        for leftover in remove_stale_temporaries(self.output_dir, "*.json"):
            self.board.log(f"removed a half-written file from an interrupted run: {leftover.name}")
        v_key = vanilla_key(self.resolved, benchmark)
        self.unit_keys = {"vanilla": self.unit_key(v_key, None)}
        self.unit_keys.update({m.label: self.unit_key(v_key, m) for m in self.resolved.methods})
        return {label: record for label, key in self.unit_keys.items() if (record := self.finished(label, key))}

    def prepare_model(self, benchmark: Benchmark, done: dict[str, ResultRecord], outcome: RunOutcome) -> VanillaModel:
        """Phase 3: the vanilla model (cached or trained), the encoders, and the vanilla
        record (or its metrics from a reusable one)."""
        device = resolve_device(self.spec.model.device)
        source = self.plugins.model_sources.get(self.spec.model.source, "model.source")
        factory = source.factory(self.resolved.model_params, cache_root(self.resolved))
        started = time.perf_counter()
        vanilla = prepare_vanilla(self.resolved, factory, benchmark, device, self.board)
        outcome.vanilla_reused = vanilla.reused
        self.board.log(
            f"vanilla model {'reused from cache' if vanilla.reused else 'trained and cached'}: {vanilla.path}"
        )
        encoder = build_encoder(self.resolved, vanilla.bundle.tokenizer)
        self.prefixed_encoders = {
            name: encoder.with_prefix(system_prompt=text) for name, text in self.spec.eval.prompt_prefixes.items()
        }
        self.vanilla, self.encoder = vanilla, encoder
        reused = done.get("vanilla")
        if reused is not None and reused.metrics is not None:
            self.vanilla_metrics = reused.metrics
        else:
            self.vanilla_metrics = self.evaluate("vanilla", vanilla.bundle.model, encoder, benchmark)
            outcome.records["vanilla"] = self.record(
                "vanilla",
                0,
                method_name="vanilla",
                status="ok",
                unit_key=self.unit_keys["vanilla"],
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
        )

    def run(self) -> RunOutcome:
        outcome = RunOutcome(self.output_dir)
        transformers.utils.logging.disable_progress_bar()  # our own bars only
        torch.set_num_threads(self.spec.threads or os.cpu_count() or 1)
        benchmark = self.load_inputs()
        done = self.reusable_units(benchmark)
        for label in done:
            outcome.records[label] = self.output_dir / f"{label}.json"
            outcome.reused.append(label)
        if done:
            self.board.log(f"reused finished results: {', '.join(done)} (--force recomputes)")
        if len(done) == len(self.unit_keys):
            return outcome

        vanilla = self.prepare_model(benchmark, done, outcome)
        assert self.encoder is not None
        snapshot = ModelSnapshot(vanilla.bundle.model)
        for index, method in enumerate(self.resolved.methods):
            if method.label in done:
                continue
            snapshot.restore(vanilla.bundle.model)
            started = time.perf_counter()
            try:
                fields = self.run_method(method, vanilla, self.encoder, benchmark)
            except Exception as error:  # one failing method must not lose the others
                self.board.log(f"[red]method {method.label} failed: {type(error).__name__}: {error}")
                fields = {
                    "method_name": method.info.name,
                    "status": "failed",
                    "error": f"{type(error).__name__}: {error}",
                    "traceback": traceback.format_exc(),
                }
                outcome.failed.append(method.label)
            if fields["status"] == "nonfinite":
                self.board.log(f"[yellow]method {method.label}: {'; '.join(fields['numerical_faults'])}")
            outcome.records[method.label] = self.record(
                method.label,
                index + 1,
                **fields,
                unit_key=self.unit_keys[method.label],
                vanilla=self.vanilla_record(),
                wall_seconds=time.perf_counter() - started,
            )
        snapshot.restore(vanilla.bundle.model)
        return outcome
