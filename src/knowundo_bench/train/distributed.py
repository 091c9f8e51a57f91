"""One unit over several processes (``accelerate launch --num_processes K -m
knowundo_bench run ...``, torchrun underneath): which process is the main one, barriers,
and each process's share of an accumulation window.

Data parallelism keeps the official step semantics: the ``grad_accum`` micro-batches of
one optimizer step are dealt round-robin to the K processes, each scales its losses by
K / ``grad_accum``, and the gradients are averaged over processes (one all-reduce per
step, :func:`average_gradients`), so every step's
gradient is the single-process mean over the same micro-batches and the number of
optimizer steps does not change. Only the main process evaluates, writes records and
shows progress; the others wait at a barrier after each unit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, TypeVar

import torch

from knowundo_bench.core.errors import InputError

T = TypeVar("T")


def world_size() -> int:
    """Processes in this run: the process group's size once joined, else ``WORLD_SIZE``
    (set by accelerate launch and torchrun), which :func:`start` joins."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", "0"))


def joined() -> bool:
    """In a process group of several processes (the training loop shards only then)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized() and world_size() > 1


def check_supported() -> None:
    """Data parallelism (``--multi_gpu``) or FSDP2 sharding (:mod:`.sharding`); DeepSpeed
    is refused in one line (its ZeRO-3 layout is what FSDP's full sharding gives)."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in {"1", "true", "yes"}:
        raise InputError(
            "accelerate launch: DeepSpeed is not supported; shard with FSDP instead "
            "(accelerate launch --config_file examples/accelerate/fsdp.yaml, ZeRO-3's layout)"
        )
    from knowundo_bench.train.sharding import ShardingConfig

    ShardingConfig.from_environment()  # a setting the harness cannot honour fails here, before any work


def timeout() -> timedelta:
    """How long a process waits at a collective (``KNOWUNDO_BENCH_DIST_TIMEOUT_S``, default
    6 hours): the others wait at a barrier while the main process evaluates, which for a
    7B model and the general tasks takes far longer than NCCL's 10-minute default."""
    raw = os.environ.get("KNOWUNDO_BENCH_DIST_TIMEOUT_S", "21600")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise InputError(f"KNOWUNDO_BENCH_DIST_TIMEOUT_S: {raw!r} is not a positive number of seconds")
    return timedelta(seconds=seconds)


def is_main() -> bool:
    return rank() == 0


def start() -> None:
    """Join the process group (gloo on CPU, NCCL on CUDA) when launched with several processes."""
    if world_size() > 1 and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        from accelerate import PartialState

        # without cpu=True accelerate looks for GPUs only
        PartialState(cpu=not torch.cuda.is_available(), timeout=timeout())


def barrier() -> None:
    if world_size() > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()


def from_main(value: T) -> T:
    """The main process's ``value`` on every process (a decision all must take alike)."""
    if world_size() == 1 or not torch.distributed.is_initialized():
        return value
    box: list[Any] = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def average_gradients(parameters: Sequence[torch.nn.Parameter]) -> None:
    """Replace each gradient by its mean over the processes, in one all-reduce. Done by
    hand rather than by DDP: a method's objective may run the model once or twice per
    micro-batch (a forget part, a retain part) and the processes' shares differ in that,
    which DDP's per-forward collectives cannot follow."""
    grads = []
    for parameter in parameters:
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        grads.append(parameter.grad)
    flat = torch._utils._flatten_dense_tensors(grads)
    torch.distributed.all_reduce(flat)
    flat /= world_size()
    for grad, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads), strict=True):
        grad.copy_(synced)


def window_share(
    window: Sequence[T], process: int | None = None, processes: int | None = None
) -> tuple[list[T], float]:
    """This process's micro-batches of an accumulation window, and the divisor of each
    one's loss (``len(window) / K``: the single-process mean once DDP averages over K).
    A process left without a micro-batch runs the first one with its loss times zero,
    so that it still takes part in the gradient all-reduce. ``process`` and ``processes``
    default to this process in its group (one process outside a group)."""
    size = processes if processes is not None else world_size() if joined() else 1
    index = process if process is not None else rank() if size > 1 else 0
    share = list(window[index::size])
    if not share:
        return [window[0]], float("inf")
    return share, len(window) / size
