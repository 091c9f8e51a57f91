"""The peer arm of ``make bench``: GradDiff as open-unlearning runs it, on HF ``Trainer``.

Written by this project after open-unlearning's ``trainer/unlearn/grad_diff.py``
(github locuslab/open-unlearning): a ``Trainer`` subclass whose ``compute_loss`` is
gamma x (minus the forget part's own model loss) + alpha x (the retain part's model loss).
Fed the official mixed micro-batches of the KnowUnDo recipe (batch 1, so each holds a
forget or a retain example, whose share is 1), in the same order as the harness (a
sequential sampler), with the same optimiser (AdamW), schedule (cosine, warm-up 0.03),
clipping and accumulation; a part absent from a micro-batch adds nothing.
"""

from __future__ import annotations

import tempfile
import time

import torch
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from knowundo_bench.config.params import TrainingParams
from knowundo_bench.train.hook_types import Batch


class GradDiffTrainer(Trainer):
    """open-unlearning's ``GradDiff`` with ``retain_loss_type: NLL``."""

    def __init__(self, *args, gamma: float = 1.0, alpha: float = 1.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gamma = gamma
        self.alpha = alpha
        self.micro_losses: list[float] = []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = torch.zeros((), device=self.args.device)
        outputs = None
        for kind, weight, sign in (("forget", self.gamma, -1.0), ("retain", self.alpha, 1.0)):
            if kind in inputs:
                part = inputs[kind]
                outputs = model(
                    input_ids=part["input_ids"], attention_mask=part["attention_mask"], labels=part["labels"]
                )
                loss = loss + weight * sign * outputs.loss * part.get("share", 1.0)
        self.micro_losses.append(float(loss.detach()))
        return (loss, outputs) if return_outputs else loss


class StepTimer(TrainerCallback):
    """Seconds from the start of each optimizer step's first micro-batch to its end."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._started = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._started)


def train_with_hf_trainer(
    model: torch.nn.Module, batches: list[Batch], params: TrainingParams, forget_weight: float, retain_weight: float
) -> tuple[list[float], list[float]]:
    """One epoch of ``batches`` (micro-batches of ``params.batch_size``) through
    ``GradDiffTrainer``; returns each optimizer step's seconds and mean loss."""
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as output_dir:
        args = TrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=1,  # one pre-collated micro-batch per item
            gradient_accumulation_steps=params.grad_accum,
            num_train_epochs=1,
            learning_rate=params.lr,
            weight_decay=params.weight_decay,
            lr_scheduler_type="cosine",
            warmup_steps=params.warmup_ratio,
            max_grad_norm=params.max_grad_norm or 0.0,
            optim="adamw_torch",
            train_sampling_strategy="sequential",
            remove_unused_columns=False,
            logging_strategy="no",
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            use_cpu=next(model.parameters()).device.type == "cpu",
            dataloader_num_workers=0,
            seed=0,
        )
        trainer = GradDiffTrainer(
            model=model,
            args=args,
            train_dataset=batches,
            data_collator=lambda items: items[0],
            callbacks=[timer],
            gamma=-forget_weight,
            alpha=retain_weight,
        )
        trainer.remove_callback(PrinterCallback)  # its end-of-training summary would go to stdout
        trainer.train()
    window = params.grad_accum
    losses = trainer.micro_losses
    step_losses = [sum(losses[i : i + window]) / len(losses[i : i + window]) for i in range(0, len(losses), window)]
    return timer.seconds, step_losses
