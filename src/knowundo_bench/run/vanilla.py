"""Vanilla preparation: fine-tune the base model on every QA pair of the domain (both
scopes, train and val) so that it knows what unlearning will later remove, and cache
the result under a key derived from the data, the model config and the hyperparameters.
The retrain oracle is the same fine-tuning without the Unlearn Scope's pairs."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knowundo_bench import __version__
from knowundo_bench.benchmark.encoding import PromptEncoder
from knowundo_bench.benchmark.pairs import Benchmark
from knowundo_bench.config.spec import VanillaSpec
from knowundo_bench.core.cache import cache_home
from knowundo_bench.core.errors import InputError, reported_as_input
from knowundo_bench.core.progress import NO_PROGRESS, ProgressBoard
from knowundo_bench.evaluate.scopes import teacher_forced
from knowundo_bench.modeling.bundles import ModelBundle, ModelFactory
from knowundo_bench.records.atomic import atomic_directory
from knowundo_bench.records.schema import VanillaRecord
from knowundo_bench.run.resolution import ResolvedSpec
from knowundo_bench.train.distributed import barrier, from_main, is_main
from knowundo_bench.train.loop import make_epoch_batches, planned_steps, train
from knowundo_bench.train.losses import WeightedNLL

CACHE_FORMAT = 2  # 2: prompt formats and the official warm-up schedule


@dataclass
class VanillaModel:
    bundle: ModelBundle
    key: str
    path: Path
    reused: bool
    training: dict[str, Any] | None
    seed: int = 0
    accuracy: float | None = None  # teacher-forced accuracy on every pair, when a target is set
    target_met: bool | None = None  # None: the spec sets no target_accuracy


def check_target(
    model: VanillaModel, benchmark: Benchmark, resolved: ResolvedSpec, settings: VanillaSpec
) -> VanillaModel:
    """The vanilla model's final teacher-forced accuracy against ``vanilla.target_accuracy``
    (checked on the model as loaded, so a cached model is judged the same way)."""
    target = settings.target_accuracy
    if target is None:
        return model
    encoder = fine_tuning_encoder(resolved, model.bundle.tokenizer, settings)
    scoring = encoder.encode_all(benchmark.trained_pairs(settings.unlearn_scope), with_eos=False)
    model.bundle.model.eval()
    accuracy, _, _ = teacher_forced(model.bundle.model, encoder, scoring, resolved.spec.eval.batch_size)
    model.accuracy, model.target_met = accuracy, accuracy >= target
    return model


def vanilla_record(model: VanillaModel, settings: VanillaSpec, unit: str | None = None) -> VanillaRecord:
    """Where the vanilla model came from and whether it met its target, for every record
    of a unit that starts from it (``unit``: the vanilla unit's label)."""
    return VanillaRecord(
        key=model.key,
        path=str(model.path),
        reused=model.reused,
        training=model.training,
        seed=model.seed,
        unit=unit,
        target_accuracy=settings.target_accuracy,
        accuracy=model.accuracy,
        target_met=model.target_met,
    )


def cache_root(resolved: ResolvedSpec) -> Path:
    """The spec's ``cache_dir``, else the cache folder (:func:`~knowundo_bench.core.cache.cache_home`)."""
    if resolved.spec.cache_dir is not None:
        return resolved.spec.cache_dir
    return cache_home()


def vanilla_key(resolved: ResolvedSpec, benchmark: Benchmark, settings: VanillaSpec, seed: int) -> str:
    """The cache key of the vanilla model trained with ``settings`` from ``seed``:
    methods whose settings agree share one model."""
    spec = resolved.spec
    identity = {
        "format": CACHE_FORMAT,
        "data": benchmark.fingerprint(),
        "model": spec.model.model_dump(mode="json", exclude={"device"}),
        "vanilla": settings.identity(),
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


def corpus(benchmark: Benchmark) -> list[str]:
    """Text the tiny tokenizer is trained on: every question and answer (the holdout's
    too, as a pretrained tokenizer covers text its model never saw, so that membership
    inference does not tell members by unknown tokens), plus the prompt words."""
    pairs = benchmark.pairs + benchmark.holdout
    return ["Question: Answer:"] + [text for p in pairs for text in (p.question, p.answer)]


def build_encoder(resolved: ResolvedSpec, tokenizer) -> PromptEncoder:
    """The spec's prompt encoder for ``tokenizer``; a format the tokenizer cannot do is
    one line naming ``model.prompt_format``."""
    model = resolved.spec.model
    try:
        return PromptEncoder(tokenizer, model.max_length, prompt_format=model.prompt_format)
    except ValueError as error:
        raise InputError(f"model.prompt_format: {error}") from None


def fine_tuning_encoder(resolved: ResolvedSpec, tokenizer, settings: VanillaSpec) -> PromptEncoder:
    """The spec's encoder at the fine-tuning length (``vanilla.max_length``: the official
    pretraining keeps 500 tokens, unlearning 256)."""
    encoder = build_encoder(resolved, tokenizer)
    return encoder if settings.max_length is None else encoder.with_max_length(settings.max_length)


def fit_vanilla(
    bundle: ModelBundle,
    benchmark: Benchmark,
    resolved: ResolvedSpec,
    device: Any,
    board: ProgressBoard | None,
    seed: int,
    params: VanillaSpec,
) -> dict[str, Any]:
    spec = resolved.spec
    bundle.model.to(device)
    encoder = fine_tuning_encoder(resolved, bundle.tokenizer, params)
    pairs = benchmark.trained_pairs(params.unlearn_scope)  # the retrain oracle: without the Unlearn Scope
    examples = encoder.encode_all(pairs)  # with EOS in every format, as the official pretraining
    scoring = encoder.encode_all(pairs, with_eos=False)
    accuracy_log: list[tuple[int, float]] = []

    def epoch_batches(epoch: int):
        return make_epoch_batches(encoder, examples, None, params.batch_size, random.Random(seed * 7919 + epoch))

    def reached_target(epoch: int) -> bool:
        if params.target_accuracy is None or (epoch + 1) % params.check_every:
            return False
        bundle.model.eval()
        accuracy, _, _ = teacher_forced(bundle.model, encoder, scoring, spec.eval.batch_size)
        bundle.model.train()
        accuracy_log.append((epoch + 1, accuracy))
        if board:
            board.log(
                f"vanilla epoch {epoch + 1}: teacher-forced accuracy {accuracy:.2f}% (target {params.target_accuracy}%)"
            )
        return from_main(accuracy >= params.target_accuracy)  # every process stops at the same epoch

    objective = WeightedNLL({"forget": 1.0}, per="token", by_share=False)  # "forget": all pairs here

    total = planned_steps(len(examples), params)
    progress = board.task("vanilla fine-tuning", total) if board else contextlib.nullcontext(NO_PROGRESS)
    with progress as reporter:
        report = train(
            bundle.model,
            objective=objective,
            params=params,
            epoch_batches=epoch_batches,
            seed=seed,
            mixed_precision=spec.model.mixed_precision,
            reporter=reporter,
            after_epoch=reached_target,
            phase="vanilla",
        )
        reached = accuracy_log and accuracy_log[-1][1] >= (params.target_accuracy or math.inf)
        if reached and report.epochs_run < params.epochs:
            reporter.end_early(f"stopped early at epoch {report.epochs_run} (target reached)")
    bundle.model.eval()
    return {**report.summary(), "accuracy_checks": accuracy_log}


def prepare_vanilla(
    resolved: ResolvedSpec,
    factory: ModelFactory,
    benchmark: Benchmark,
    device: Any,
    board: ProgressBoard | None = None,
    seed: int | None = None,
    settings: VanillaSpec | None = None,
) -> VanillaModel:
    """Load the cached vanilla model for this spec, data, seed (default: the spec's) and
    vanilla settings (default: the spec's), or train and cache it; then check it against
    the target accuracy."""
    seed = resolved.spec.seed if seed is None else seed
    settings = settings or resolved.spec.vanilla
    key = vanilla_key(resolved, benchmark, settings, seed)
    root = cache_root(resolved)
    path = root / "vanilla" / key
    loading = reported_as_input(f"model ({resolved.spec.model.source}): cannot load the model or its tokenizer")
    if (path / "vanilla.json").is_file():
        with loading:
            bundle = factory.load(path)
        bundle.model.to(device)
        meta = json.loads((path / "vanilla.json").read_text())
        model = VanillaModel(bundle, key, path, reused=True, training=meta.get("training"), seed=seed)
        return check_target(model, benchmark, resolved, settings)
    with loading:
        bundle = factory.create(corpus(benchmark), seed)
    training = fit_vanilla(bundle, benchmark, resolved, device, board, seed, settings)
    if is_main():  # the other processes of a multi-process run hold the same weights
        with atomic_directory(path) as staging:
            factory.save(bundle, staging)
            meta = {"key": key, "knowundo_bench": __version__, "training": training}
            (staging / "vanilla.json").write_text(json.dumps(meta, indent=2))
    barrier()
    return check_target(
        VanillaModel(bundle, key, path, reused=False, training=training, seed=seed), benchmark, resolved, settings
    )
