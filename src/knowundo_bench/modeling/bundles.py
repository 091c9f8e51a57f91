"""Model bundles, the model-source protocol and LoRA.

A model source plugin returns a :class:`ModelFactory`: it builds a fresh base model
(the tiny source also trains its tokenizer on the benchmark text), and saves and
reloads vanilla models as safetensors (a PEFT adapter folder with LoRA). Weights are
never unpickled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

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
    dtype: Literal["float32", "base"] = Field(
        "float32",
        description="float32: adapter weights (and their optimizer states) in float32, as peft >= 0.12; "
        "base: in the base model's dtype, as the official run's peft 0.10 (bf16 with a bf16 base)",
    )

    @property
    def autocast(self) -> bool:
        """peft's ``autocast_adapter_dtype``: float16/bfloat16 adapters cast up to float32."""
        return self.dtype == "float32"


def attach_lora(model: PreTrainedModel, lora: LoraSpec) -> PeftModel:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config, autocast_adapter_dtype=lora.autocast)


def load_lora(model: PreTrainedModel, directory: Path, lora: LoraSpec | None = None) -> PeftModel:
    from peft import PeftModel

    autocast = lora.autocast if lora is not None else True
    return PeftModel.from_pretrained(model, str(directory), is_trainable=True, autocast_adapter_dtype=autocast)


def merge_adapters(model: Any) -> Any:
    """``model`` with its LoRA adapters merged into the base weights, as a deployed model
    is (a peft model's ``merge_and_unload``: the merged base model is returned and the
    peft wrapper dropped); a model without adapters as it is."""
    merge = getattr(model, "merge_and_unload", None)
    return merge() if callable(merge) else model
