"""Where a model runs and what state it is in: ``model.device`` checked against this
machine, train/eval mode for a block, and snapshots of the vanilla weights restored
before every method run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from knowundo_bench.core.errors import InputError


def resolve_device(name: str) -> torch.device:
    """``model.device`` as a torch device; one that this machine lacks is one line naming
    the field (not torch's "Torch not compiled with CUDA enabled" at the first tensor)."""
    local_rank = os.environ.get("LOCAL_RANK")  # one process per GPU under accelerate launch / torchrun
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and local_rank is not None and torch.cuda.is_available():
        name = f"cuda:{local_rank}"
    elif name.startswith("cuda:") and local_rank is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise InputError(
            f"model.device: {name!r} would put every process of this multi-process launch on one GPU; "
            "use device: cuda (each process takes its own, by LOCAL_RANK)"
        )
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise InputError(f"model.device: {name!r} but {why}; use device: auto (CUDA when available, else CPU)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(
                f"model.device: {name!r} but this machine has {torch.cuda.device_count()} CUDA device(s); "
                "use device: auto or cuda"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"model.device: {name!r} but MPS is not available here; use device: auto")
    return device


class ModelSnapshot:
    """The trainable tensors of the vanilla model, restored before every method run.

    Cheap for LoRA (only the adapter is copied) and exact for full fine-tuning.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.tensors = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def restore(self, model: torch.nn.Module) -> None:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name in self.tensors:
                    param.copy_(self.tensors[name])
                    param.requires_grad_(True)
                    param.grad = None


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@contextmanager
def train_mode(model: torch.nn.Module, training: bool) -> Iterator[torch.nn.Module]:
    """Switch ``model`` to train or eval mode for a block, then restore what it had."""
    was_training = model.training
    model.train(training)
    try:
        yield model
    finally:
        model.train(was_training)
