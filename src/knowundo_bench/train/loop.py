"""The one training loop every method shares, and how it batches forget and retain data.

Built on ``accelerate.Accelerator`` for device placement, mixed precision and
distributed back-propagation; gradient accumulation is explicit (``grad_accum``
micro-batches per optimizer step, a shorter last window per epoch) so that the step
count does not depend on how accelerate tracks dataloaders. Optimiser: AdamW with the
official run scripts' schedule (HF ``cosine``, ``warmup_ratio`` 0.03: linear warm-up
from 0 over ceil(ratio x steps) steps, then cosine decay to 0). Wall time and peak
memory are recorded per optimizer step.

Methods that take retain data batch it as the official code does by default
(``retain_batching: mixed``, ``ascent_plus_descent_tokenizer.py``): the N forget
examples and the first N x ``retain_ratio`` retain examples form one dataset, shuffled
once and read in the same order every epoch, so an epoch has N(1 + ratio)/(bs x accum)
optimizer steps and a micro-batch may hold forget examples, retain examples or both.
Each part of a micro-batch carries its ``share`` of the examples, so that
``share x mean per-example loss`` summed over the parts is the official GA+GD mean over
the micro-batch of factor x per-example loss (GA+KL's official loss adds its two terms
without shares). ``paired`` keeps the earlier scheme: each
forget batch with a retain batch of the same size, drawn cyclically.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from knowundo_bench.benchmark.encoding import Encoded, PromptEncoder, batched
from knowundo_bench.config.params import TrainingParams
from knowundo_bench.core.errors import InputError
from knowundo_bench.core.faults import fault_point
from knowundo_bench.core.progress import NO_PROGRESS
from knowundo_bench.train.distributed import average_gradients, joined, window_share
from knowundo_bench.train.efficiency import StepMeter
from knowundo_bench.train.hook_types import Batch, Objective, TrainingReport
from knowundo_bench.train.losses import WeightedNLL, weighted_nll
from knowundo_bench.train.packing import (
    PassPlan,
    length_buckets,
    packed,
    packed_nll_sums,
    packing_plan,
    packs_here,
    padded_positions,
)
from knowundo_bench.train.sharding import ShardingConfig, gather_into, shard_copy, shard_masks


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def warmup_steps_for(total_steps: int, warmup_ratio: float) -> int:
    """HF Trainer's ``get_warmup_steps``: ceil(ratio x total)."""
    return math.ceil(total_steps * warmup_ratio)


def _lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """HF ``get_cosine_schedule_with_warmup`` (the official ``lr_scheduler_type cosine``)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))

    return factor


def make_epoch_batches(
    encoder: PromptEncoder,
    forget: Sequence[Encoded],
    retain: Sequence[Encoded] | None,
    batch_size: int,
    rng: random.Random,
) -> list[Batch]:
    """Shuffle ``forget`` into batches; pair each with a batch of retain examples drawn
    cyclically from a shuffled retain set (the retain set is usually of another size)."""
    order = list(forget)
    rng.shuffle(order)
    retain_order = list(retain or [])
    rng.shuffle(retain_order)
    batches: list[Batch] = []
    cursor = 0
    for chunk in batched(order, batch_size):
        batch: Batch = {"forget": encoder.collate(chunk)}
        if retain_order:
            picked = [retain_order[(cursor + i) % len(retain_order)] for i in range(len(chunk))]
            cursor += len(chunk)
            batch["retain"] = encoder.collate(picked)
        batches.append(batch)
    return batches


def mixed_dataset(
    forget: Sequence[Encoded], retain: Sequence[Encoded], ratio: int, rng: random.Random
) -> list[tuple[str, Encoded]]:
    """The official ``AdvSupervisedDataset``: forget example i followed by retain
    examples i*ratio .. (i+1)*ratio - 1 (the first N x ratio, fewer if the retain set is
    smaller), then shuffled once."""
    items: list[tuple[str, Encoded]] = []
    for index, example in enumerate(forget):
        items.append(("forget", example))
        items += [("retain", r) for r in retain[index * ratio : (index + 1) * ratio]]
    rng.shuffle(items)
    return items


def make_mixed_batches(encoder: PromptEncoder, items: Sequence[tuple[str, Encoded]], batch_size: int) -> list[Batch]:
    """Consecutive micro-batches of the (already shuffled) mixed dataset, each split into
    its forget and retain parts with their shares of the micro-batch."""
    batches: list[Batch] = []
    for chunk in batched(items, batch_size):
        batch: Batch = {}
        for kind in ("forget", "retain"):
            examples = [example for k, example in chunk if k == kind]
            if examples:
                batch[kind] = {**encoder.collate(examples), "share": torch.tensor(len(examples) / len(chunk))}
        batches.append(batch)
    return batches


def train(
    model: torch.nn.Module,
    *,
    objective: Objective,
    params: TrainingParams,
    epoch_batches: Callable[[int], list[Batch]],
    seed: int,
    trainable: set[str] | None = None,
    row_masks: dict[str, torch.Tensor] | None = None,
    mixed_precision: str = "no",
    reporter=NO_PROGRESS,
    after_epoch: Callable[[int], bool] | None = None,
    after_step: Callable[[int], None] | None = None,
    warmup_steps: int = 1,
    phase: str = "unlearn",
) -> TrainingReport:
    """Run ``objective`` over ``epoch_batches(epoch)`` and update the trainable parameters.

    ``trainable`` restricts updates to those parameter names (localisation): the others
    are frozen for the duration and get neither gradients nor optimizer state.
    ``row_masks`` further restricts named tensors to some output rows: the other rows'
    gradients are zeroed before clipping (so Adam's moments stay zero and the update is
    exactly zero) and weight decay, applied by hand for these tensors, skips them too.
    ``after_epoch(epoch)`` may return True to stop early (vanilla target accuracy);
    ``after_step(step)`` runs after each optimizer step (1-based), outside the timing
    (metric curves).
    """
    from accelerate import Accelerator

    seed_everything(seed)
    device = next(model.parameters()).device
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision=mixed_precision)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if trainable is not None:
        unknown = trainable - {n for n, _ in named}
        if unknown:
            raise ValueError(f"localizer selected unknown or frozen parameters: {sorted(unknown)[:3]}")
        frozen = [p for n, p in named if n not in trainable]
        named = [(n, p) for n, p in named if n in trainable]
    else:
        frozen = []
    if not named:
        raise ValueError("nothing to train: no trainable parameters")
    sharding = ShardingConfig.from_environment() if joined() else None
    if sharding is not None and not (params.stack_window and isinstance(objective, WeightedNLL)):
        raise InputError(
            "FSDP: this method's loss does not stack into one pass per process (every process must run "
            "the same forwards); launch it without the FSDP config (--multi_gpu)"
        )
    for p in frozen:
        p.requires_grad_(False)
    work = model  # what trains: the model itself, or a sharded copy of it (FSDP2)
    if sharding is not None:
        work = shard_copy(model, sharding)
        by_name = dict(work.named_parameters())
        named = [(n, by_name[n]) for n, _ in named]
    masks = _row_masks(dict(named), row_masks or {})
    if sharding is not None:
        masks = shard_masks(masks)
    model_parameters = sum(p.numel() for p in model.parameters())
    meter = StepMeter(device)
    report = TrainingReport(
        trainable_tensors=len(named),
        trainable_parameters=sum(p.numel() for _, p in named) - sum(int((~m).sum()) * p[0].numel() for p, m in masks),
        model_parameters=model_parameters,
        # frozen weights (LoRA base, localisation) need no weight gradients: 4N instead of 6N
        flops_per_token=(4 if masks or len(named) < sum(1 for _ in model.parameters()) else 6) * model_parameters,
        warmup_steps=warmup_steps,
        memory_kind=meter.memory_kind,
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    )
    losses: list[torch.Tensor] = []
    try:
        first_epoch = epoch_batches(0)
        micro_per_epoch = len(first_epoch)
        steps_per_epoch = math.ceil(micro_per_epoch / params.grad_accum)
        total_steps = steps_per_epoch * params.epochs
        if params.max_steps is not None:
            total_steps = min(total_steps, params.max_steps)
        masked = {id(p) for p, _ in masks}
        groups = [
            {"params": [p for _, p in named if id(p) not in masked], "weight_decay": params.weight_decay},
            {"params": [p for p, _ in masks], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(
            [g for g in groups if g["params"]], lr=params.lr, weight_decay=params.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _lr_lambda(total_steps, warmup_steps_for(total_steps, params.warmup_ratio))
        )
        # The scheduler stays outside prepare(): accelerate would step it once per process per
        # optimizer step, and the step count here is the single-process one whatever K is.
        # Over several processes the model stays a plain module (no DDP): gradients are
        # averaged by hand once per window (distributed.average_gradients).
        # FSDP reduce-scatters the gradients itself and is neither wrapped nor prepared.
        data_parallel = accelerator.num_processes > 1
        if sharding is None and data_parallel:
            optimizer = accelerator.prepare(optimizer)
        elif sharding is None:
            work, optimizer = accelerator.prepare(work, optimizer)
        work.train()
        stacked = (
            StackedWindows(objective, accelerator, optimizer, autocast=data_parallel, may_split=sharding is None)
            if params.stack_window and isinstance(objective, WeightedNLL)
            else None
        )
        report.stacked_windows = stacked is not None
        report.processes = accelerator.num_processes
        step = 0
        for epoch in range(params.epochs):
            batches = first_epoch if epoch == 0 else epoch_batches(epoch)
            for window in batched(batches, params.grad_accum):
                if step >= total_steps:
                    break
                report.step_tokens.append(sum(int(part["attention_mask"].sum()) for b in window for part in b.values()))
                meter.start()
                share, divisor = window_share(window)  # all of it in one process (divisor: its length)
                if stacked is not None:
                    done = stacked.backward(work, share, divisor)
                    window_loss, passes, positions = done.loss, done.passes, done.positions
                else:
                    window_loss = torch.zeros((), device=accelerator.device)
                    for index, batch in enumerate(share):
                        batch = {k: {t: v.to(accelerator.device) for t, v in b.items()} for k, b in batch.items()}
                        last = index == len(share) - 1
                        sync = contextlib.nullcontext() if last or data_parallel else accelerator.no_sync(work)
                        with sync, accelerator.autocast() if data_parallel else contextlib.nullcontext():
                            loss = objective(work, batch) / divisor
                            accelerator.backward(loss)
                        window_loss += loss.detach()  # no host sync inside the accumulation window
                    passes = len(share)
                    positions = sum(int(part["input_ids"].numel()) for b in share for part in b.values())
                report.forward_passes.append(passes)
                real = sum(int(part["attention_mask"].sum()) for b in share for part in b.values())
                report.step_padding_fraction.append(1.0 - real / positions if positions else 0.0)
                if data_parallel:  # the window's mean gradient and loss over every process's share
                    if sharding is None:
                        average_gradients([p for _, p in named])
                    window_loss = accelerator.reduce(window_loss, reduction="sum") / accelerator.num_processes
                for p, keep in masks:
                    if p.grad is not None:
                        p.grad.masked_fill_(~keep, 0.0)
                        if params.weight_decay:  # AdamW's decoupled decay, selected rows only
                            p.data.mul_(torch.where(keep, 1.0 - scheduler.get_last_lr()[0] * params.weight_decay, 1.0))
                if params.max_grad_norm is not None and sharding is not None:
                    torch.nn.utils.clip_grad_norm_([p for _, p in named], params.max_grad_norm)
                elif params.max_grad_norm is not None:
                    accelerator.clip_grad_norm_([p for _, p in named], params.max_grad_norm)
                report.step_lr.append(float(scheduler.get_last_lr()[0]))  # the rate this step used
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                meter.stop()
                losses.append(window_loss)
                step += 1
                fault_point(f"{phase}_step")
                # Reading the loss waits for the device: on CUDA the bar shows steps only.
                reporter.advance(1, status="" if meter.cuda else f"loss {float(window_loss):.3f}")
                if after_step is not None:
                    if sharding is not None:
                        gather_into(work, model)  # the main process evaluates the whole model
                    after_step(step)
            report.epochs_run = epoch + 1
            if sharding is not None and after_epoch is not None:
                gather_into(work, model)
            if step >= total_steps or (after_epoch is not None and after_epoch(epoch)):
                break
        if sharding is not None:
            gather_into(work, model)
        report.step_seconds = meter.finish()
        report.step_peak_mem_gb = meter.peaks_gb
        report.step_losses = torch.stack(losses).tolist() if losses else []
    finally:
        for p in frozen:
            p.requires_grad_(True)
        accelerator.free_memory()
    return report


def _row_masks(
    named: dict[str, torch.nn.Parameter], row_masks: dict[str, torch.Tensor]
) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
    """(parameter, boolean mask broadcastable to it) for each row-masked tensor."""
    result = []
    for name, mask in row_masks.items():
        if name not in named:
            raise ValueError(f"row mask for an unknown or untrained parameter: {name}")
        param = named[name]
        if mask.dtype != torch.bool or tuple(mask.shape) != (param.shape[0],):
            raise ValueError(f"row mask of {name} must be a bool vector of length {param.shape[0]}")
        result.append((param, mask.to(param.device).view(-1, *[1] * (param.dim() - 1))))
    return result


@dataclass(frozen=True)
class WindowPass:
    """What back-propagating one window took: its loss (detached), the forward passes
    and the token positions they computed (real tokens plus padding)."""

    loss: torch.Tensor
    passes: int
    positions: int


class StackedWindows:
    """Runs an accumulation window of a :class:`WeightedNLL` objective as few forward and
    backward passes over all its examples, weighted per example: the same gradient as its
    micro-batches one by one, with far fewer, larger kernels. Examples are not padded to
    the window's longest (:mod:`knowundo_bench.train.packing`): on CUDA they are packed
    into rows, elsewhere run in length buckets. A window that runs out of CUDA memory is
    redone with half as many examples a pass (and later windows start from that size)."""

    def __init__(self, objective: WeightedNLL, accelerator, optimizer, autocast: bool, may_split: bool = True) -> None:
        self.objective = objective
        self.accelerator = accelerator
        self.optimizer = optimizer
        self.autocast = autocast
        self.may_split = may_split  # not when sharded: every process must run the same passes
        self.chunk: int | None = None  # most examples per pass; None: the whole window
        self.packs = packs_here(torch.device(accelerator.device))

    def backward(self, model: torch.nn.Module, window: Sequence[Batch], divisor: float) -> WindowPass:
        """Back-propagate the window's loss."""
        batch, weights = self.objective.stacked_terms(window, divisor)
        while True:
            chunk = self.chunk or len(weights)
            try:
                return self._passes(model, batch, weights, chunk)
            except torch.cuda.OutOfMemoryError:
                if chunk == 1 or not self.may_split:
                    raise
            # outside the except block, so that the failed pass's tensors are freed
            self.optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            self.chunk = math.ceil(chunk / 2)

    def plan(self, lengths: list[int], chunk: int) -> PassPlan:
        """Which examples run together (at most ``chunk`` a pass). Under FSDP every process
        must run as many passes as the others, so a sharded window is never split."""
        if not self.may_split:
            return PassPlan((tuple(range(len(lengths))),), padded_positions(lengths), sum(lengths))
        if self.packs:
            return packing_plan(lengths, max_rows=chunk)
        return length_buckets(lengths, max_rows=chunk)

    def _passes(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor], weights: torch.Tensor, chunk: int
    ) -> WindowPass:
        device = self.accelerator.device
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        plan = self.plan(lengths, chunk)
        total = torch.zeros((), device=device)
        for run in plan.passes:
            rows = torch.tensor(run)
            with self.accelerator.autocast() if self.autocast else contextlib.nullcontext():
                if self.packs and self.may_split:
                    part = {name: tensor[rows] for name, tensor in batch.items()}
                    packed_rows = {name: tensor.to(device) for name, tensor in packed(part).items()}
                    sums = packed_nll_sums(model, packed_rows, len(run))
                    loss = (sums * weights[rows].to(sums.device)).sum()
                else:
                    width = max(lengths[i] for i in run)  # drop columns only padding fills
                    part = {name: tensor[rows, :width].to(device) for name, tensor in batch.items()}
                    loss = weighted_nll(model, part, weights[rows])
                self.accelerator.backward(loss)
            total += loss.detach()
        return WindowPass(total, len(plan.passes), plan.computed)


def planned_steps(n_examples: int, params: TrainingParams) -> int:
    """Optimizer steps for ``n_examples`` per epoch (forget examples, plus the retain
    examples of a mixed dataset)."""
    steps = math.ceil(math.ceil(n_examples / params.batch_size) / params.grad_accum) * params.epochs
    return min(steps, params.max_steps) if params.max_steps else steps
