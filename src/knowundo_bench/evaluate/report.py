"""Everything measured on one model, in one place: Section 4.1's scope metrics, again under
each prompt prefix (Finding 2), membership inference against the holdout, the general
tasks (Section 2.3.2), the samples of ``--log-samples``, and a guard's own accuracy when
one stands in front of the model."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from knowundo_bench.benchmark.encoding import PromptEncoder
from knowundo_bench.benchmark.pairs import Benchmark, QAPair
from knowundo_bench.config.evaluation import EvalSpec
from knowundo_bench.core.errors import reported_as_input
from knowundo_bench.core.progress import ProgressBoard
from knowundo_bench.evaluate.general.tasks import evaluate_general, general_average
from knowundo_bench.evaluate.mia import membership_inference
from knowundo_bench.evaluate.scopes import (
    NamedGuard,
    ScopeScores,
    evaluate,
    evaluate_scopes,
    evaluation_work,
    scope_metrics,
)
from knowundo_bench.records.atomic import atomic_write_text
from knowundo_bench.records.files import json_safe
from knowundo_bench.records.layout import samples_path
from knowundo_bench.records.schema import GuardRecord, Metrics, ScopeMetrics


@dataclass(frozen=True)
class Evaluator:
    """Measures models on one benchmark with one vanilla model's encoders: ``encoder``
    for plain requests and one ``prefixed`` encoder per prompt prefix (each caching its
    encodings across the models it scores)."""

    spec: EvalSpec
    benchmark: Benchmark
    encoder: PromptEncoder
    prefixed: Mapping[str, PromptEncoder]
    board: ProgressBoard
    results_dir: Path  # where samples/<label>.jsonl go with ``log_samples``
    seed: int  # the general tasks' few-shot sampling

    def metrics(
        self,
        label: str,
        model: torch.nn.Module,
        guard: NamedGuard | None = None,
        *,
        attacked: bool = False,
        retaught: Collection[QAPair] = (),
    ) -> Metrics:
        """Scope metrics, again under each prompt prefix, membership inference (with a
        holdout) and general tasks; with ``log_samples`` each val question's readings go
        to samples/<label>.jsonl. Behind a ``guard`` the scope metrics are the guarded
        model's (membership inference and the general tasks are the model's own). An
        ``attacked`` copy of a model gets neither general tasks nor samples, and the
        forget pairs it was ``retaught`` are not counted as members."""
        spec, benchmark = self.spec, self.benchmark
        log_samples = spec.log_samples and not attacked
        work = evaluation_work(benchmark, spec) * (1 + len(spec.prompt_prefixes))
        with self.board.task(f"evaluate {label}", work) as reporter:
            plain = evaluate_scopes(model, self.encoder, benchmark, spec, reporter, generate=log_samples, guard=guard)
            metrics = scope_metrics(*plain)
            metrics["prompt_prefixes"] = {}
            prefixed_scores = {}
            for name, prefixed_encoder in self.prefixed.items():
                prefixed_scores[name] = evaluate_scopes(
                    model, prefixed_encoder, benchmark, spec, reporter, generate=log_samples, guard=guard
                )
                prefixed = scope_metrics(*prefixed_scores[name])
                metrics["prompt_prefixes"][name] = {
                    "system_prompt": spec.prompt_prefixes[name],
                    **{key: prefixed[key] for key in ("unlearn", "retention", "avg_success")},
                }
        if benchmark.holdout:
            with self.board.task(f"membership inference {label}", 1) as reporter:
                metrics["mia"] = membership_inference(model, self.encoder, benchmark, spec.mia, retaught)
                reporter.advance(1)
        if log_samples:
            write_samples(samples_path(self.results_dir, label), benchmark, plain, prefixed_scores)
        if spec.general is not None and not attacked:
            loading = reported_as_input("eval.general: cannot run the general tasks")
            with self.board.task(f"general tasks {label}", len(spec.general.tasks)) as reporter, loading:
                scores = evaluate_general(model, self.encoder.tokenizer, spec.general, spec.general_data_dir, self.seed)
                reporter.advance(len(spec.general.tasks))
            metrics["general"] = {**scores, "general_avg": general_average(scores)}
        return Metrics.model_validate(metrics)

    def scope_only(self, model: torch.nn.Module) -> Metrics:
        """The plain scope metrics without ROUGE-L (no generation): a curve point's reading."""
        quick = self.spec.model_copy(update={"rouge": False})
        return Metrics.model_validate(evaluate(model, self.encoder, self.benchmark, quick))


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


def guard_record(name: str, params: dict[str, Any], metrics: Metrics, details: dict[str, Any]) -> GuardRecord:
    """The guard's parameters, what its fit recorded, and its own accuracy (percent) on
    the val requests: the Unlearn Scope's it should refuse, the Retention Scope's it
    should let through; plain and per prompt prefix."""

    def accuracy(unlearn: ScopeMetrics, retention: ScopeMetrics) -> dict[str, float]:
        return {"unlearn": unlearn.refusal_rate or 0.0, "retention": 100.0 - (retention.refusal_rate or 0.0)}

    return GuardRecord.model_validate(
        {
            **details,
            "name": name,
            "params": params,
            "accuracy": accuracy(metrics.unlearn, metrics.retention),
            "prefixed_accuracy": {
                prefix: accuracy(prefixed.unlearn, prefixed.retention)
                for prefix, prefixed in metrics.prompt_prefixes.items()
            },
        }
    )
