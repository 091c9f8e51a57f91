"""Batched evaluation of both scopes on their val splits."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from knowundo_bench.benchmark.encoding import Encoded, PromptEncoder, length_sorted_batches
from knowundo_bench.benchmark.pairs import Benchmark, QAPair
from knowundo_bench.config.evaluation import MAX_NEW_TOKENS, EvalSpec
from knowundo_bench.core.faults import fault_point
from knowundo_bench.core.progress import Reporter
from knowundo_bench.evaluate.collapse import collapse_reading
from knowundo_bench.evaluate.guarding import Guard, check_decisions, requests_of
from knowundo_bench.evaluate.metrics import example_nll_sums, per_example_accuracy, perplexity, rouge_l
from knowundo_bench.modeling.devices import model_device, train_mode


@dataclass(frozen=True)
class NamedGuard:
    """A fitted guard and its name (for messages)."""

    name: str
    guard: Guard


@dataclass(frozen=True)
class ScopeScores:
    """Raw scores on one split: accuracy in [0, 100], perplexity (per example, the
    official reading, and token-pooled), ROUGE-L in [0, 100]; and per val pair its
    teacher-forced accuracy (0-100, NaN without answer tokens), mean answer NLL and greedy
    answer (when generated) — the paired statistics and ``--log-samples`` use them."""

    accuracy: float
    ppl: float
    rouge_l: float | None
    ppl_token: float = float("nan")
    example_accuracy: tuple[float, ...] = ()
    example_nll: tuple[float, ...] = ()
    generations: tuple[str, ...] = ()
    refused: tuple[bool, ...] | None = None  # behind a guard: which requests it refused

    def answered(self) -> list[str]:
        """The greedy answers the model gave (not a guard's refusals)."""
        refused = self.refused or (False,) * len(self.generations)
        return [text for text, no in zip(self.generations, refused, strict=True) if not no]

    @property
    def refusal_rate(self) -> float | None:
        return None if self.refused is None else 100.0 * sum(self.refused) / max(1, len(self.refused))

    def raw(self) -> dict[str, object]:
        """What the record keeps (``metrics.raw``): the scores and each pair's accuracy."""
        raw: dict[str, object] = {
            "accuracy": self.accuracy,
            "ppl": self.ppl,
            "rouge_l": self.rouge_l,
            "ppl_token": self.ppl_token,
            "example_accuracy": list(self.example_accuracy),
        }
        if self.refused is not None:
            raw["example_refused"] = list(self.refused)
        return raw


@dataclass(frozen=True)
class ExampleScores:
    """Teacher-forced readings of each example: accuracy (a fraction, NaN without answer
    tokens), summed answer NLL and answer-token count."""

    accuracy: torch.Tensor
    nll_sums: torch.Tensor
    token_counts: torch.Tensor

    def summary(self) -> tuple[float, float, float]:
        """Mean accuracy over answered examples, per-example and token-pooled perplexity."""
        values = self.accuracy[~self.accuracy.isnan()]
        accuracy = 100.0 * float(values.mean()) if len(values) else float("nan")
        answered = self.token_counts > 0
        means = self.nll_sums[answered] / self.token_counts[answered]
        return (
            accuracy,
            perplexity(float(means.sum()), len(means)),
            perplexity(float(self.nll_sums.sum()), int(self.token_counts.sum())),
        )

    def refusing(self, refused: torch.Tensor) -> ExampleScores:
        """The readings of a model behind a guard: a refused request produces none of its
        answer tokens (accuracy 0) and has no answer likelihood (left out of perplexity)."""
        scored = refused & ~self.accuracy.isnan()  # an example without answer tokens stays unscored
        return ExampleScores(
            torch.where(scored, torch.zeros_like(self.accuracy), self.accuracy),
            torch.where(refused, torch.zeros_like(self.nll_sums), self.nll_sums),
            torch.where(refused, torch.zeros_like(self.token_counts), self.token_counts),
        )

    def percent(self) -> list[float]:
        return (100.0 * self.accuracy.double()).tolist()

    def mean_nll(self) -> list[float]:
        """Each example's mean answer NLL (NaN when it has no answer token)."""
        return (self.nll_sums.double() / self.token_counts.double()).tolist()


def teacher_forced(
    model, encoder: PromptEncoder, examples: Sequence[Encoded], batch_size: int, reporter: Reporter | None = None
) -> tuple[float, float, float]:
    """Mean per-example answer accuracy (0-100), perplexity (exp of the mean over
    examples of each one's mean answer NLL) and token-pooled perplexity."""
    return teacher_forced_examples(model, encoder, examples, batch_size, reporter).summary()


@torch.no_grad()
def teacher_forced_examples(
    model, encoder: PromptEncoder, examples: Sequence[Encoded], batch_size: int, reporter: Reporter | None = None
) -> ExampleScores:
    """Each example's teacher-forced answer accuracy and answer NLL, in one pass over
    batches of similar length (returned in the order of ``examples``)."""
    accuracy = torch.full((len(examples),), float("nan"), dtype=torch.float64)
    sums = torch.zeros(len(examples), dtype=torch.float64)
    counts = torch.zeros(len(examples), dtype=torch.long)
    for indices, batch in length_sorted_batches(encoder, examples, batch_size, model_device(model)):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        at = torch.tensor(indices)
        accuracy[at] = per_example_accuracy(logits, batch["labels"]).cpu()
        batch_sums, batch_counts = example_nll_sums(logits, batch["labels"])
        sums[at] = batch_sums.double().cpu()
        counts[at] = batch_counts.cpu()
        if reporter:
            reporter.advance(len(indices))
    return ExampleScores(accuracy, sums, counts)


@torch.no_grad()
def greedy_answers(
    model,
    encoder: PromptEncoder,
    examples: Sequence[Encoded],
    batch_size: int,
    max_new_tokens: int,
    reporter: Reporter | None = None,
) -> list[str]:
    """Greedy-decode answers for batches of prompts of similar length (left-padded),
    returned in the order of ``examples``."""
    device = model_device(model)
    tokenizer = encoder.tokenizer
    answers = [""] * len(examples)
    for indices, batch in length_sorted_batches(encoder, examples, batch_size, device, prompts=True):
        output = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        for index, text in zip(indices, tokenizer.batch_decode(new_tokens, skip_special_tokens=True), strict=True):
            answers[index] = text.strip()
        if reporter:
            reporter.advance(len(indices))
    return answers


def score_split(
    model,
    encoder: PromptEncoder,
    pairs: Sequence[QAPair],
    spec: EvalSpec,
    reporter: Reporter | None = None,
    generate: bool = False,
    guard: NamedGuard | None = None,
) -> ScopeScores:
    """Teacher-forced scores, and greedy answers when ROUGE-L is on or ``generate``;
    behind a ``guard``, as a user meets the model (:mod:`knowundo_bench.evaluate.guarding`)."""
    fault_point("evaluate")
    scoring = encoder.encode_all(pairs, with_eos=False)
    examples = teacher_forced_examples(model, encoder, scoring, spec.batch_size, reporter)
    refused: list[bool] | None = None
    if guard is not None:
        requests = requests_of(encoder, scoring)
        refused = check_decisions(guard.guard.refuses(requests), requests, guard.name)
        examples = examples.refusing(torch.tensor(refused, dtype=torch.bool))
    accuracy, ppl, ppl_token = examples.summary()
    rouge = None
    predictions: list[str] = []
    if spec.rouge or generate:
        answered = [e for i, e in enumerate(scoring) if not (refused and refused[i])]
        budget = spec.max_new_tokens or answer_budget(encoder, pairs)  # evaluate_scopes sets the domain's
        generated = iter(greedy_answers(model, encoder, answered, spec.batch_size, budget, reporter))
        refusal = guard.guard.refusal if guard is not None else ""
        predictions = [refusal if refused and refused[i] else next(generated) for i in range(len(scoring))]
    if spec.rouge:
        rouge = 100.0 * sum(rouge_l(p, pair.answer) for p, pair in zip(predictions, pairs, strict=True)) / len(pairs)
    return ScopeScores(
        accuracy=accuracy,
        ppl=ppl,
        rouge_l=rouge,
        ppl_token=ppl_token,
        example_accuracy=tuple(examples.percent()),
        example_nll=tuple(examples.mean_nll()),
        generations=tuple(predictions),
        refused=None if refused is None else tuple(refused),
    )


def evaluate(
    model, encoder: PromptEncoder, benchmark: Benchmark, spec: EvalSpec, reporter: Reporter | None = None
) -> dict:
    """The paper's scope metrics: Unlearn Success = 100 - accuracy on unlearn/val,
    Retention Success = accuracy on retention/val, Avg Success = their mean."""
    return scope_metrics(*evaluate_scopes(model, encoder, benchmark, spec, reporter))


def answer_budget(encoder: PromptEncoder, pairs: Sequence[QAPair]) -> int:
    """Greedy tokens for ROUGE-L when the spec sets none: the longest reference answer
    of ``pairs`` (a domain's val splits) in this tokenizer's tokens, plus a tenth (at
    least 8), so that no answer is cut short (64 cut the longest privacy answers)."""
    longest = max((len(encoder.answer_ids(pair.answer)) for pair in pairs), default=0)
    return min(longest + max(8, math.ceil(longest / 10)), MAX_NEW_TOKENS)


def with_answer_budget(spec: EvalSpec, encoder: PromptEncoder, benchmark: Benchmark) -> EvalSpec:
    """``spec`` with ``max_new_tokens`` set (:func:`answer_budget` when it is not)."""
    if spec.max_new_tokens is not None:
        return spec
    budget = answer_budget(encoder, benchmark.unlearn_val + benchmark.retention_val)
    return spec.model_copy(update={"max_new_tokens": budget})


def evaluate_scopes(
    model,
    encoder: PromptEncoder,
    benchmark: Benchmark,
    spec: EvalSpec,
    reporter: Reporter | None = None,
    generate: bool = False,
    guard: NamedGuard | None = None,
) -> tuple[ScopeScores, ScopeScores]:
    """Raw scores of the Unlearn and Retention Scopes' val splits (behind ``guard``, if any)."""
    spec = with_answer_budget(spec, encoder, benchmark)
    with train_mode(model, False):
        unlearn = score_split(model, encoder, benchmark.unlearn_val, spec, reporter, generate, guard)
        retention = score_split(model, encoder, benchmark.retention_val, spec, reporter, generate, guard)
    return unlearn, retention


def scope_metrics(unlearn: ScopeScores, retention: ScopeScores) -> dict:
    """Section 4.1's metrics from the raw scores of both scopes, and whether the model's
    answers show it collapsed (:mod:`knowundo_bench.evaluate.collapse`; refusals left out)."""
    unlearn_success = 100.0 - unlearn.accuracy
    reading = collapse_reading([*unlearn.answered(), *retention.answered()])
    guarded: dict[str, dict[str, float | None]] = {"unlearn": {}, "retention": {}}
    if unlearn.refused is not None and retention.refused is not None:  # perplexity is over the answered only
        guarded["unlearn"]["refusal_rate"] = unlearn.refusal_rate
        guarded["retention"]["refusal_rate"] = retention.refusal_rate
    return {
        "unlearn": {
            "success": unlearn_success,
            "ppl": unlearn.ppl,
            "rouge_l": unlearn.rouge_l,
            "ppl_token": unlearn.ppl_token,
            **guarded["unlearn"],
        },
        "retention": {
            "success": retention.accuracy,
            "ppl": retention.ppl,
            "rouge_l": retention.rouge_l,
            "ppl_token": retention.ppl_token,
            **guarded["retention"],
        },
        "avg_success": (unlearn_success + retention.accuracy) / 2,
        "raw": {"unlearn": unlearn.raw(), "retention": retention.raw()},
        "collapse": None if reading is None else reading.as_record(),
    }


def evaluation_work(benchmark: Benchmark, spec: EvalSpec) -> int:
    """How many example-passes :func:`evaluate` makes (for progress bars)."""
    passes = 2 if spec.rouge or spec.log_samples else 1
    return passes * (len(benchmark.unlearn_val) + len(benchmark.retention_val))
