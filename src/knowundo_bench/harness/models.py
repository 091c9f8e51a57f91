"""Model bundles, the model-source protocol, LoRA, and vanilla snapshots.

A model source plugin returns a :class:`ModelFactory`: it builds a fresh base model
(the tiny source also trains its tokenizer on the benchmark text), and saves and
reloads vanilla models as safetensors (a PEFT adapter folder with LoRA). Weights are
never unpickled.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field

from knowundo_bench.harness.errors import InputError

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel


@dataclass
class ModelBundle:
    """A causal LM (a transformers ``PreTrainedModel``, or a peft model wrapping one)
    and its tokenizer."""

    model: PreTrainedModel | PeftModel
    tokenizer: Any


class ModelFactory(Protocol):
    def create(self, corpus: list[str], seed: int) -> ModelBundle:
        """A fresh base model (with LoRA attached if configured) and its tokenizer."""

    def save(self, bundle: ModelBundle, directory: Path) -> None:
        """Save what is needed to rebuild the trained vanilla model (safetensors only)."""

    def load(self, directory: Path) -> ModelBundle:
        """Rebuild the vanilla model saved by :meth:`save`, trainable as before."""


class LoraSpec(BaseModel):
    """A LoRA adapter (peft) trained for the vanilla model and continued by unlearning."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


def attach_lora(model: PreTrainedModel, lora: LoraSpec) -> PeftModel:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def load_lora(model: PreTrainedModel, directory: Path) -> PeftModel:
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(directory), is_trainable=True)


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


def device_batches(
    encoder, examples: Sequence[Any], size: int, device: torch.device
) -> Iterator[tuple[Sequence[Any], dict[str, torch.Tensor]]]:
    """(examples, padded batch on ``device``) in chunks of ``size``, for scoring passes."""
    from knowundo_bench.harness.encoding import batched

    for chunk in batched(examples, size):
        yield chunk, {k: v.to(device) for k, v in encoder.collate(chunk).items()}
