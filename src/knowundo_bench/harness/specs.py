"""Benchmark-suite specs: YAML validated by pydantic, plugin parameters included.

Fields a plugin defines (a data source's ``path``, a method's ``lr``) sit flat beside
the common ones and are validated against that plugin's parameter model, so a typo
anywhere is reported as one line naming the field, with "did you mean" hints.
"""

from __future__ import annotations

import difflib
import math
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from knowundo_bench.harness.contracts import TrainingParams
from knowundo_bench.harness.data import first_error, format_validation_error
from knowundo_bench.harness.efficiency import EfficiencySpec
from knowundo_bench.harness.errors import InputError
from knowundo_bench.harness.evaluation import EvalSpec
from knowundo_bench.harness.plugin_manager import Plugins
from knowundo_bench.harness.registry import LocalizerInfo, MethodInfo, Params

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def _safe_name(value: str) -> str:
    if not SAFE_NAME.match(value) or ".." in value:
        raise ValueError("use letters, digits, '_', '-' and '.' only (it names files)")
    return value


class DataSpec(BaseModel):
    """``data``: the source plugin's own fields sit beside these."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    source: str = "synthetic"
    domain: Literal["privacy", "copyright"] = "privacy"
    instances: int | None = Field(None, ge=1, description="keep the first N instances (authors/books)")


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
    device: str = "auto"
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    max_length: int = Field(256, ge=8)
    prompt_format: Literal["auto", "raw", "chat", "qa"] = Field(
        "auto", description="raw: the official question\\n\\nanswer (paper specs); auto: chat template if any, else qa"
    )


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


class MethodSpec(BaseModel):
    """One entry of ``methods``: the method's own parameters sit beside these."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    name: str
    label: str | None = None
    seeds: list[int] | None = Field(None, min_length=1, description="this method's seeds (default: the spec's)")
    localizer: str | dict[str, Any] | None = None
    ablate_localization: bool = Field(
        False, description="also run the same objective on all parameters, as its own leaderboard row"
    )

    @field_validator("label")
    @classmethod
    def _label_is_safe(cls, value: str | None) -> str | None:
        return None if value is None else _safe_name(value)

    @field_validator("seeds")
    @classmethod
    def _seeds_unique(cls, value: list[int] | None) -> list[int] | None:
        return _unique_seeds(value)


class Spec(BaseModel):
    """A benchmark suite: data, model, vanilla preparation, methods, evaluation."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str
    seed: int = Field(0, description="seeds data sampling and the shared vanilla model; the methods without `seeds`")
    seeds: list[int] | None = Field(
        None, min_length=1, description="run every method once per seed, each as its own unit and record"
    )
    threads: int | None = Field(None, ge=1, description="torch threads (default: all cores)")
    output_dir: Path | None = None
    cache_dir: Path | None = None
    data: DataSpec = DataSpec()
    ood_retain: OodRetainSpec = OodRetainSpec()
    model: ModelSpec = ModelSpec()
    vanilla: VanillaSpec = VanillaSpec()
    methods: list[MethodSpec] = Field(default_factory=list)
    eval: EvalSpec = EvalSpec()
    efficiency: EfficiencySpec = EfficiencySpec()

    @field_validator("name")
    @classmethod
    def _name_is_safe(cls, value: str) -> str:
        return _safe_name(value)

    @field_validator("seeds")
    @classmethod
    def _seeds_unique(cls, value: list[int] | None) -> list[int] | None:
        return _unique_seeds(value)

    @model_validator(mode="after")
    def _labels_unique(self) -> Spec:
        seen: set[str] = set()
        for index, method in enumerate(self.methods):
            label = method.label or method.name
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


@dataclass(frozen=True)
class ResolvedLocalizer:
    info: LocalizerInfo
    plugin: object
    params: Params


@dataclass(frozen=True)
class ResolvedMethod:
    label: str
    info: MethodInfo
    plugin: object
    params: Params  # the method's own model, a TrainingParams for every built-in
    localizer: ResolvedLocalizer | None
    ablation_of: str | None = None  # the localised method's label, for its control run
    seeds: tuple[int, ...] | None = None  # None: one run from the spec's `seed`, recorded as `<label>.json`


@dataclass(frozen=True)
class ResolvedSpec:
    """A validated spec with every plugin resolved and its parameters validated."""

    spec: Spec
    path: Path | None
    data_params: Params
    model_params: Params
    ood_params: Params
    methods: list[ResolvedMethod]

    @property
    def needs_ood_retain(self) -> bool:
        return any(m.info.retain == "out_of_distribution" for m in self.methods)

    def echo(self) -> dict[str, Any]:
        return self.spec.model_dump(mode="json")


def _model_at(model: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The nested pydantic model that ``path`` (field names, list indices) leads to."""
    for part in path:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        candidates = [field.annotation, *typing.get_args(field.annotation)]
        candidates += [arg for c in list(candidates) for arg in typing.get_args(c)]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return None
        model = nested[0]
    return model


def _field_hint(error: ValidationError, model: type[BaseModel], known_extra: set[str]) -> str:
    first = first_error(error)
    if first["type"] == "extra_forbidden":
        owner = _model_at(model, tuple(first["loc"][:-1]))
        known = [*(owner.model_fields if owner else []), *(known_extra if owner is model else [])]
        close = difflib.get_close_matches(str(first["loc"][-1]), known, n=1)
        if close:
            return f"; did you mean {close[0]!r}?"
    return ""


def _validate_params(model: type[Params], values: dict[str, Any], where: str, common: set[str]) -> Params:
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise InputError(format_validation_error(error, where) + _field_hint(error, model, common)) from None


def _resolve_localizer(
    raw: str | dict[str, Any] | None, default: str | None, plugins: Plugins, where: str
) -> ResolvedLocalizer | None:
    if raw is None:
        raw = default
    if raw is None:
        return None
    values = {"name": raw} if isinstance(raw, str) else dict(raw)
    name = values.pop("name", None)
    if not isinstance(name, str):
        raise InputError(f"{where}.name: Field required (the localizer's name)")
    info, plugin = plugins.localizers.resolve(name, f"{where}.name")
    params = _validate_params(info.params, values, where, {"name"})
    return ResolvedLocalizer(info, plugin, params)


def resolve(spec: Spec, plugins: Plugins, path: Path | None = None) -> ResolvedSpec:
    data_info = plugins.data_sources.get(spec.data.source, "data.source")
    data_params = _validate_params(data_info.params, spec.data.model_extra or {}, "data", set(DataSpec.model_fields))
    model_info = plugins.model_sources.get(spec.model.source, "model.source")
    model_params = _validate_params(
        model_info.params, spec.model.model_extra or {}, "model", set(ModelSpec.model_fields)
    )
    methods: list[ResolvedMethod] = []
    for index, method in enumerate(spec.methods):
        where = f"methods.{index}"
        info, plugin = plugins.methods.resolve(method.name, f"{where}.name")
        params = _validate_params(info.params, method.model_extra or {}, where, set(MethodSpec.model_fields))
        localizer = _resolve_localizer(method.localizer, info.default_localizer, plugins, f"{where}.localizer")
        label = method.label or method.name
        seeds = method.seeds or spec.seeds
        run_seeds = None if seeds is None else tuple(seeds)
        methods.append(ResolvedMethod(label, info, plugin, params, localizer, seeds=run_seeds))
        if method.ablate_localization:
            if localizer is None:
                raise InputError(
                    f"{where}.ablate_localization: the method has no localizer to ablate (set 'localizer')"
                )
            methods.append(
                ResolvedMethod(ablation_label(label), info, plugin, params, None, ablation_of=label, seeds=run_seeds)
            )
    ood_info = plugins.ood_sources.get(spec.ood_retain.source, "ood_retain.source")
    ood_params = _validate_params(
        ood_info.params, spec.ood_retain.model_extra or {}, "ood_retain", set(OodRetainSpec.model_fields)
    )
    return ResolvedSpec(spec, path, data_params, model_params, ood_params, methods)


def non_finite_field(value: Any, path: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    """The path of the first NaN or infinite number in a parsed spec, or None.

    Checked on the raw YAML so that it covers every field, plugin parameters included
    (``allow_inf_nan=False`` on the models also rejects the strings "inf" and "nan")."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        found = non_finite_field(child, (*path, key))
        if found is not None:
            return found
    return None


def nul_field(value: Any, path: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    """The path of the first key or string holding a NUL character (YAML's ``"\\0"``),
    which no path, name or text field can take, or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        if isinstance(key, str) and "\x00" in key:
            return (*path, key.replace("\x00", "\\0"))
        found = nul_field(child, (*path, key))
        if found is not None:
            return found
    return None


def parse_spec(raw: Any, plugins: Plugins, source: str = "spec") -> ResolvedSpec:
    if not isinstance(raw, dict):
        raise InputError("a spec must be a YAML mapping", source=source)
    bad = non_finite_field(raw)
    if bad is not None:
        raise InputError(f"{'.'.join(map(str, bad))}: must be a finite number", source=source)
    bad = nul_field(raw)
    if bad is not None:
        raise InputError(f"{'.'.join(map(str, bad)) or 'spec'}: must not contain a NUL character", source=source)
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as error:
        raise InputError(format_validation_error(error) + _field_hint(error, Spec, set()), source=source) from None
    try:
        return resolve(spec, plugins, Path(source) if source != "spec" else None)
    except InputError as error:
        raise InputError(str(error), source=source) from None


def load_spec(path: Path, plugins: Plugins) -> ResolvedSpec:
    """Read and validate a YAML spec; every problem is one ``InputError`` line."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise InputError("spec file not found", source=str(path)) from None
    except OSError as error:
        raise InputError(f"cannot read spec ({error.strerror})", source=str(path)) from None
    except UnicodeDecodeError as error:
        raise InputError(f"not UTF-8 text (byte {error.start})", source=str(path)) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InputError(f"invalid YAML{where}: {getattr(error, 'problem', error)}", source=str(path)) from None
    return parse_spec(raw, plugins, str(path))
