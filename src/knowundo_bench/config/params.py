"""Parameter models: the base every plugin's parameters derive from, and the training
settings every method shares (Table 7's defaults)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Params(BaseModel):
    """Base of every plugin's parameter model: unknown fields and non-finite numbers
    (NaN, inf) are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TrainingParams(Params):
    """Optimisation settings shared by all methods; defaults are Table 7's unlearning rows."""

    epochs: int = Field(2, ge=1)
    lr: float = Field(5e-5, gt=0)
    batch_size: int = Field(1, ge=1)
    grad_accum: int = Field(16, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="official run scripts: 0.03")
    max_grad_norm: float | None = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    stack_window: bool = Field(
        True,
        description="run an accumulation window as one stacked forward/backward when the objective is a "
        "WeightedNLL (same gradient, far fewer kernels); false: one pass per micro-batch",
    )


class ForgetRetainParams(TrainingParams):
    """Training settings of methods with a retain term (GA+GD, GA+KL, MemFlex, NPO+GD)."""

    retain_batching: Literal["mixed", "paired"] = Field(
        "mixed", description="mixed: the official forget+retain dataset; paired: a retain batch per forget batch"
    )
    retain_ratio: int = Field(1, ge=1, description="retain examples per forget example (official positive_ratio)")
