"""What the harness hands to plugins and what they hand back: the typed records of the
``unlearn`` and ``localize`` hooks (:mod:`knowundo_bench.plugin.hookspecs`).

Plugins import these from :mod:`knowundo_bench.api`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from knowundo_bench.benchmark.pairs import QAPair, RetainText
from knowundo_bench.train.efficiency import step_summary

Batch = dict[str, dict[str, torch.Tensor]]
"""A micro-batch: its ``"forget"`` and/or ``"retain"`` part, each a collated batch
(``input_ids``, ``attention_mask``, ``labels``; ``share`` in mixed batches)."""
Objective = Callable[[torch.nn.Module, Batch], torch.Tensor]
"""A method's loss: model and micro-batch in, a scalar to minimise out."""
RetainSet = list[QAPair] | list[RetainText]
"""What ``unlearn`` and ``localize`` receive as ``retain``: the Retention Scope's QA
pairs, or out-of-distribution passages for methods registered with
``retain="out_of_distribution"``."""


@dataclass(frozen=True)
class MethodRun:
    """What the ``unlearn`` hook receives about the method to run."""

    name: str
    label: str
    params: Any  # the method's validated Params instance
    seed: int


@dataclass(frozen=True)
class LocalizerRun:
    """What the ``localize`` hook receives about the localizer to run."""

    name: str
    params: Any
    seed: int


@dataclass
class Localization:
    """Parameter names unlearning may update, plus per-tensor details to record.

    ``row_masks`` narrows a selected tensor to some of its output rows (neurons): a
    boolean vector over dim 0; the training loop zeroes the gradient of the other rows.
    """

    selected: list[str]
    details: dict[str, Any] = field(default_factory=dict)
    row_masks: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class TrainingReport:
    """Per optimizer step: seconds, peak memory (GB), tokens, mean loss and learning rate (see
    :mod:`knowundo_bench.train.efficiency` for how they are measured)."""

    step_seconds: list[float] = field(default_factory=list)
    step_peak_mem_gb: list[float] = field(default_factory=list)
    step_tokens: list[int] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    step_lr: list[float] = field(default_factory=list)  # the learning rate each step used
    forward_passes: list[int] = field(default_factory=list)  # per step: stacked passes or micro-batches
    # per step: the share of the computed positions that were padding (issue 28)
    step_padding_fraction: list[float] = field(default_factory=list)
    stacked_windows: bool = False
    processes: int = 1  # processes that trained together (the tokens are all of theirs)
    epochs_run: int = 0
    trainable_tensors: int = 0
    trainable_parameters: int = 0
    model_parameters: int = 0
    flops_per_token: float | None = None  # 6N, or 4N with frozen parameters
    warmup_steps: int = 1
    memory_kind: str = "cpu_peak_rss_growth"
    device: str = "cpu"

    def summary(self, peak_flops: float | None = None) -> dict[str, Any]:
        return {
            "steps": len(self.step_seconds),
            "epochs_run": self.epochs_run,
            **step_summary(
                self.step_seconds,
                self.step_peak_mem_gb,
                self.step_tokens,
                self.warmup_steps,
                self.flops_per_token,
                peak_flops,
                self.processes,
            ),
            "memory_kind": self.memory_kind,
            "device": self.device,
            "final_loss": self.step_losses[-1] if self.step_losses else None,
            "stacked_windows": self.stacked_windows,
            "forward_passes_per_step": max(self.forward_passes, default=None),
            "padding_fraction": (
                sum(self.step_padding_fraction) / len(self.step_padding_fraction)
                if self.step_padding_fraction
                else None
            ),
            "trainable_tensors": self.trainable_tensors,
            "trainable_parameters": self.trainable_parameters,
            "model_parameters": self.model_parameters,
        }
