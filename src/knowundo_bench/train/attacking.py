"""What an attack plugin receives and returns (``eval.attacks``): the context of one
attack on one model, and its outcome."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from knowundo_bench.benchmark.encoding import PromptEncoder
from knowundo_bench.benchmark.pairs import QAPair
from knowundo_bench.config.params import TrainingParams
from knowundo_bench.core.progress import ProgressBoard
from knowundo_bench.train.context import UnlearnContext
from knowundo_bench.train.hook_types import TrainingReport
from knowundo_bench.train.losses import WeightedNLL

RELEARNING = WeightedNLL({"forget": 1.0}, per="token", by_share=False)
"""The answer-token cross-entropy of the pairs relearned (the vanilla fine-tuning's loss)."""


@dataclass(frozen=True)
class AttackOutcome:
    """What an attack did: details worth recording (a weight error, a curve), the
    attacked model when it is not the object it was given (a model rebuilt quantized),
    and the forget pairs it trained on (``seen``: left out of membership inference's
    members, which would otherwise be told apart for being retaught, not remembered)."""

    details: dict[str, Any] = field(default_factory=dict)
    model: torch.nn.Module | None = None
    seen: tuple[QAPair, ...] = ()


@dataclass
class AttackContext:
    """Everything an attack needs besides its parameters and the model.

    ``forget`` and ``retain`` are the Unlearn and Retention Scopes' train pairs (the
    metrics are read on the val pairs, which an attack never sees); ``seed`` is the
    attack's own (the same for every method of a run seed, so that each relearns the same
    subset); ``vanilla_lr`` the vanilla fine-tuning's learning rate; ``measure(model,
    step)`` reads the scope metrics without generation (a curve point, as a dict)."""

    encoder: PromptEncoder
    forget: list[QAPair]
    retain: list[QAPair]
    seed: int
    vanilla_lr: float
    label: str = ""  # "<unit>@<attack>", for progress bars
    mixed_precision: str = "no"
    board: ProgressBoard | None = None
    measure: Callable[[torch.nn.Module, int], dict[str, Any]] | None = None

    def train(
        self,
        model: torch.nn.Module,
        *,
        params: TrainingParams,
        pairs: list[QAPair],
        after_step: Callable[[int], None] | None = None,
    ) -> TrainingReport:
        """Fine-tune ``model``'s trainable parameters on ``pairs`` with the answer-token
        cross-entropy (:data:`RELEARNING`), through the shared training loop."""
        context = UnlearnContext(
            encoder=self.encoder,
            seed=self.seed,
            mixed_precision=self.mixed_precision,
            board=self.board,
            label=self.label,
            after_step=after_step,
        )
        return context.train(model, objective=RELEARNING, params=params, forget=pairs)
