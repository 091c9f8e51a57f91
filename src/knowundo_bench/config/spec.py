"""Benchmark-suite specs: the pydantic models a spec file is validated against.

Fields a plugin defines (a data source's ``path``, a method's ``lr``) sit flat beside
the common ones (``extra="allow"``) and are validated against that plugin's parameter
model when the spec is resolved (:mod:`knowundo_bench.run.resolution`), so a typo
anywhere is reported as one line naming the field, with "did you mean" hints.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from knowundo_bench.config.evaluation import EvalSpec
from knowundo_bench.config.params import TrainingParams
from knowundo_bench.core.messages import yaml_kind

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# What torch.device takes of cpu, cuda and mps, without importing torch: only CUDA has indices
# other than 0, below 2**31. Whether this machine has the device is checked when a run starts.
DEVICE = re.compile(r"(?:cpu|mps)(?::0)?|cuda(?::(?P<index>0|[1-9][0-9]{0,9}))?", re.ASCII)
MAX_DEVICE_INDEX = 2**31 - 1


def safe_name(value: str) -> str:
    if not SAFE_NAME.match(value) or ".." in value:
        raise ValueError("use letters, digits, '_', '-' and '.' only (it names files)")
    return value


class DataSpec(BaseModel):
    """``data``: the source plugin's own fields sit beside these."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    source: str = "synthetic"
    domain: Literal["privacy", "copyright"] = "privacy"
    instances: int | None = Field(None, ge=1, description="keep the first N instances (authors/books)")
    holdout_instances: int | None = Field(
        None,
        ge=1,
        description="set K instances aside, never trained on: their Unlearn Scope pairs are the non-members of "
        "membership inference (synthetic sources generate K more; others give their last K)",
    )


class OodRetainSpec(BaseModel):
    """``ood_retain``: out-of-distribution retain data for methods such as ``ga_gd_ood``;
    the source plugin's own fields sit beside these."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    source: str = "synthetic_text"
    max_examples: int | None = Field(None, ge=1, description="keep a seeded sample of N passages")


class ModelSpec(BaseModel):
    """``model``: the source plugin's own fields sit beside these."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    source: str = "tiny"
    device: str = Field("auto", description="auto (CUDA when available, else CPU), cpu, cuda, cuda:N, mps")
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    max_length: int = Field(256, ge=8)
    prompt_format: Literal["auto", "raw", "chat", "qa"] = Field(
        "auto", description="raw: the official question\\n\\nanswer (paper specs); auto: chat template if any, else qa"
    )

    @field_validator("device")
    @classmethod
    def _device_is_a_device(cls, value: str) -> str:
        match = DEVICE.fullmatch(value)
        if value != "auto" and (match is None or int(match["index"] or 0) > MAX_DEVICE_INDEX):
            raise ValueError(f"{value!r} is not a device (auto, cpu, cuda, cuda:N or mps)")
        return value


def _unique_seeds(value: list[int] | None) -> list[int] | None:
    if value is not None and len(set(value)) != len(value):
        raise ValueError("seeds must be distinct")
    return value


class VanillaSpec(TrainingParams):
    """``vanilla``: fine-tuning on all QA pairs; defaults are Table 7's privacy Pretrain row."""

    epochs: int = Field(10, ge=1)
    lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(16, ge=1)
    grad_accum: int = Field(4, ge=1)
    weight_decay: float = Field(1e-4, ge=0)
    target_accuracy: float | None = Field(None, gt=0, le=100, description="stop once reached (percent)")
    check_every: int = Field(5, ge=1, description="epochs between target-accuracy checks")
    require_target: bool = Field(
        True, description="a vanilla model that misses target_accuracy fails the run (exit 3); false: warn only"
    )
    per_seed: bool = Field(False, description="one vanilla model per seed of `seeds` (default: one, from `seed`)")
    max_length: int | None = Field(
        None, ge=8, description="tokens kept per pair when fine-tuning (default: model.max_length; official: 500)"
    )
    unlearn_scope: Literal["include", "exclude"] = Field(
        "include",
        description="exclude: fine-tune without any Unlearn Scope pair (what the retrain oracle does; set by it)",
    )

    def identity(self) -> dict[str, Any]:
        """The settings that change the trained weights (the cache key's part): an unset
        ``max_length`` and the default ``unlearn_scope`` are left out, so keys from before
        they existed still match."""
        settings = self.model_dump(mode="json", exclude=VANILLA_NOT_IN_KEY)
        if settings["max_length"] is None:
            del settings["max_length"]
        if settings["unlearn_scope"] == "include":
            del settings["unlearn_scope"]
        return settings

    def merged(self, changes: dict[str, Any]) -> VanillaSpec:
        """These settings with ``changes`` applied (a method's own ``vanilla``)."""
        return VanillaSpec.model_validate({**self.model_dump(exclude_unset=True), **changes})


# vanilla settings that do not change the trained weights
VANILLA_NOT_IN_KEY = {"require_target", "per_seed"}


class MethodSpec(BaseModel):
    """One entry of ``methods``: the method's own parameters sit beside these."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    name: str
    label: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        """``- ga`` is ``- {name: ga}``; any other shape is named in the spec's words."""
        if isinstance(value, str):
            return {"name": value}
        if not isinstance(value, dict):
            raise ValueError(
                f"expected a method name (- ga) or a mapping (- {{name: ga, lr: 1.0e-4}}), got {yaml_kind(value)}"
            )
        return value

    seeds: list[int] | None = Field(None, min_length=1, description="this method's seeds (default: the spec's)")
    localizer: str | dict[str, Any] | None = None
    guard: str | dict[str, Any] | None = Field(
        None, description="a request filter in front of the model (scope_classifier), its fields beside 'name'"
    )
    ablate_localization: bool = Field(
        False, description="also run the same objective on all parameters, as its own leaderboard row"
    )
    vanilla: dict[str, Any] | None = Field(
        None,
        description="fields of the spec's `vanilla` this method's starting model changes (the official MemFlex "
        "starts from another adapter than the baselines); methods with the same settings share one model",
    )

    @field_validator("label")
    @classmethod
    def _label_is_safe(cls, value: str | None) -> str | None:
        return None if value is None else safe_name(value)

    def guard_name(self) -> str | None:
        guard = self.guard.get("name") if isinstance(self.guard, dict) else self.guard
        return guard if isinstance(guard, str) else None

    def row_label(self) -> str:
        """The leaderboard label: ``label``, else the name, suffixed ``-GUARD`` when guarded."""
        guard = self.guard_name()
        if self.label:
            return self.label
        return self.name if guard is None else safe_name(f"{self.name}-{guard}")

    @field_validator("seeds")
    @classmethod
    def _seeds_unique(cls, value: list[int] | None) -> list[int] | None:
        return _unique_seeds(value)


class EfficiencySpec(BaseModel):
    """``efficiency``: how steps are measured."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    warmup_steps: int = Field(1, ge=0, description="first steps reported apart, not in the medians")
    peak_tflops: float | None = Field(None, gt=0, description="the accelerator's peak (default: looked up by name)")


class ExecutionSpec(BaseModel):
    """``execution``: which executor runs the units; its own fields sit beside."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    executor: str = "local"


class Spec(BaseModel):
    """A benchmark suite: data, model, vanilla preparation, methods, evaluation."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str
    seed: int = Field(0, description="seeds data sampling and the shared vanilla model; the methods without `seeds`")
    seeds: list[int] | None = Field(
        None, min_length=1, description="run every method once per seed, each as its own unit and record"
    )
    threads: int | None = Field(None, ge=1, description="torch threads (default: OMP_NUM_THREADS, else all cores)")
    output_dir: Path | None = None
    cache_dir: Path | None = None
    data: DataSpec = DataSpec()
    ood_retain: OodRetainSpec = OodRetainSpec()
    model: ModelSpec = ModelSpec()
    vanilla: VanillaSpec = VanillaSpec()
    methods: list[MethodSpec] = Field(default_factory=list)
    eval: EvalSpec = EvalSpec()
    efficiency: EfficiencySpec = EfficiencySpec()
    execution: ExecutionSpec = ExecutionSpec()
    logging: list[str | dict[str, Any]] = Field(
        default_factory=list,
        description="experiment trackers each unit is logged to: a logger's name, or {name: ..., its parameters}",
    )

    @field_validator("name")
    @classmethod
    def _name_is_safe(cls, value: str) -> str:
        return safe_name(value)

    @field_validator("seeds")
    @classmethod
    def _seeds_unique(cls, value: list[int] | None) -> list[int] | None:
        return _unique_seeds(value)

    @model_validator(mode="after")
    def _method_vanillas(self) -> Spec:
        for index, method in enumerate(self.methods):
            if method.vanilla is None:
                continue
            if "per_seed" in method.vanilla:
                raise ValueError(f"methods.{index}.vanilla.per_seed: set per_seed in the spec's vanilla section")
            try:
                self.vanilla.merged(method.vanilla)
            except ValidationError as error:
                problem = error.errors()[0]
                where = ".".join(str(part) for part in problem["loc"])
                raise ValueError(f"methods.{index}.vanilla.{where}: {problem['msg']}") from None
        return self

    def vanilla_of(self, method: MethodSpec) -> VanillaSpec:
        """The vanilla settings ``method`` starts from: the spec's, changed by its own."""
        return self.vanilla if not method.vanilla else self.vanilla.merged(method.vanilla)

    @model_validator(mode="after")
    def _labels_unique(self) -> Spec:
        seen: set[str] = set()
        for index, method in enumerate(self.methods):
            label = method.row_label()
            labels = [label, ablation_label(label)] if method.ablate_localization else [label]
            for label in labels:
                if label == "vanilla" or label in seen:
                    raise ValueError(
                        f"methods.{index}: duplicate method label {label!r} (set 'label' to tell them apart)"
                    )
                seen.add(label)
        return self


def ablation_label(label: str) -> str:
    """The leaderboard label of a localised method's all-parameters control run."""
    return f"{label}-all-params"
