"""The :class:`UnlearnContext` a method or localizer receives: the encoder, the seed, the
localisation, progress bars, and the shared training loop bound to all of them."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from knowundo_bench.benchmark.encoding import Encodable, Encoded, PromptEncoder
from knowundo_bench.config.params import TrainingParams
from knowundo_bench.core.progress import NO_PROGRESS, ProgressBoard
from knowundo_bench.train.hook_types import Batch, Objective, TrainingReport
from knowundo_bench.train.loop import make_epoch_batches, make_mixed_batches, mixed_dataset, planned_steps, train


@dataclass
class UnlearnContext:
    """Everything a method or localizer needs besides the model and the data."""

    encoder: PromptEncoder
    seed: int
    domain: str = "privacy"  # the benchmark's domain (Table 12's mu/sigma depend on it)
    trainable: set[str] | None = None
    row_masks: dict[str, torch.Tensor] = field(default_factory=dict)
    mixed_precision: str = "no"
    board: ProgressBoard | None = None
    label: str = ""  # the unit's label ("ga", or "ga@1" with seeds), for progress bars
    after_step: Callable[[int], None] | None = None  # set by the runner for metric curves
    warmup_steps: int = 1  # steps measured apart (efficiency.warmup_steps)

    def progress(self, description: str, total: int):
        """A progress bar for long work inside a method or localizer (a context manager
        yielding a reporter; silent when the run shows no progress)."""
        return self.board.task(description, total) if self.board else contextlib.nullcontext(NO_PROGRESS)

    def encode(self, items: Sequence[Encodable | Encoded]) -> list[Encoded]:
        """Encode QA pairs or retain texts for unlearning (already encoded examples pass
        through); EOS as the prompt format says (none in ``raw``, as officially)."""
        return self.encoder.encode_all(items, with_eos=self.encoder.unlearning_eos)

    def train(
        self,
        model: torch.nn.Module,
        *,
        objective: Objective,
        params: TrainingParams,
        forget: Sequence[Encodable | Encoded],
        retain: Sequence[Encodable | Encoded] | None = None,
    ) -> TrainingReport:
        """Train ``objective`` on the forget set, with the retain set batched as
        ``params.retain_batching`` says (mixed, the official default, for
        :class:`ForgetRetainParams`; paired for other parameter models), restricted to
        the localised parameters (``self.trainable``, ``self.row_masks``). Examples a
        method has relabelled may be passed already encoded."""
        forget_encoded = self.encode(forget)
        retain_encoded = self.encode(retain) if retain else None
        n_examples = len(forget_encoded)
        if retain_encoded and getattr(params, "retain_batching", "paired") == "mixed":
            items = mixed_dataset(
                forget_encoded, retain_encoded, getattr(params, "retain_ratio", 1), random.Random(self.seed)
            )
            n_examples = len(items)

            def epoch_batches(epoch: int) -> list[Batch]:  # same order every epoch (SequentialSampler)
                return make_mixed_batches(self.encoder, items, params.batch_size)
        else:

            def epoch_batches(epoch: int) -> list[Batch]:
                rng = random.Random(self.seed * 1_000_003 + epoch)
                return make_epoch_batches(self.encoder, forget_encoded, retain_encoded, params.batch_size, rng)

        with self.progress(f"unlearn {self.label}", planned_steps(n_examples, params)) as reporter:
            return train(
                model,
                objective=objective,
                params=params,
                epoch_batches=epoch_batches,
                seed=self.seed,
                trainable=self.trainable,
                row_masks=self.row_masks,
                mixed_precision=self.mixed_precision,
                reporter=reporter,
                after_step=self.after_step,
                warmup_steps=self.warmup_steps,
            )
