"""Benchmark-suite specs: YAML validated by pydantic, plugin parameters included.

Fields a plugin defines (a data source's ``path``, a method's ``lr``) sit flat beside
the common ones and are validated against that plugin's parameter model, so a typo
anywhere is reported as one line naming the field, with "did you mean" hints.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
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
from knowundo_bench.harness.data import first_error, format_validation_error, yaml_kind
from knowundo_bench.harness.efficiency import EfficiencySpec
from knowundo_bench.harness.errors import InputError
from knowundo_bench.harness.evaluation import EvalSpec
from knowundo_bench.harness.execution import ExecutionSpec
from knowundo_bench.harness.paths import anchor_paths
from knowundo_bench.harness.plugin_manager import Plugins
from knowundo_bench.harness.registry import ExecutorInfo, GuardInfo, LocalizerInfo, MethodInfo, Params, Registry

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
    device: str = Field("auto", description="auto (CUDA when available, else CPU), cpu, cuda, cuda:N, mps")
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    max_length: int = Field(256, ge=8)
    prompt_format: Literal["auto", "raw", "chat", "qa"] = Field(
        "auto", description="raw: the official question\\n\\nanswer (paper specs); auto: chat template if any, else qa"
    )

    @field_validator("device")
    @classmethod
    def _device_is_a_device(cls, value: str) -> str:
        if value != "auto":
            try:
                device = torch.device(value)
            except (RuntimeError, ValueError):
                device = None
            if device is None or device.type not in {"cpu", "cuda", "mps"} or (device.type != "cuda" and device.index):
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

    @field_validator("label")
    @classmethod
    def _label_is_safe(cls, value: str | None) -> str | None:
        return None if value is None else _safe_name(value)

    def guard_name(self) -> str | None:
        guard = self.guard.get("name") if isinstance(self.guard, dict) else self.guard
        return guard if isinstance(guard, str) else None

    def row_label(self) -> str:
        """The leaderboard label: ``label``, else the name, suffixed ``-GUARD`` when guarded."""
        guard = self.guard_name()
        if self.label:
            return self.label
        return self.name if guard is None else _safe_name(f"{self.name}-{guard}")

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
    execution: ExecutionSpec = ExecutionSpec()

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


@dataclass(frozen=True)
class ResolvedLocalizer:
    info: LocalizerInfo
    plugin: object
    params: Params


@dataclass(frozen=True)
class ResolvedGuard:
    info: GuardInfo
    plugin: object
    params: Params


@dataclass(frozen=True)
class ResolvedExecutor:
    info: ExecutorInfo
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
    guard: ResolvedGuard | None = None
    seed_label: str | None = None  # what the method's seed derives from (default: its label)


@dataclass(frozen=True)
class ResolvedSpec:
    """A validated spec with every plugin resolved and its parameters validated."""

    spec: Spec
    path: Path | None
    data_params: Params
    model_params: Params
    ood_params: Params
    methods: list[ResolvedMethod]
    executor: ResolvedExecutor | None = None  # None: run here, in order (as ``local``)
    overrides: tuple[str, ...] = ()  # --set KEY=VALUE, as given (the record keeps them)
    defaulted: tuple[str, ...] = ()  # sections the spec leaves out ("model", "data"): the embedded default runs

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


# Top-level keys people write for a section of another name: "did you mean" on meaning,
# where spelling alone (difflib) would not find it.
SECTION_ALIASES = {
    "evaluation": "eval",
    "evaluate": "eval",
    "metrics": "eval",
    "method": "methods",
    "baselines": "methods",
    "unlearning": "methods",
    "dataset": "data",
    "datasets": "data",
    "models": "model",
    "base_model": "model",
    "pretrain": "vanilla",
    "pretraining": "vanilla",
    "finetune": "vanilla",
    "fine_tuning": "vanilla",
    "output": "output_dir",
    "out_dir": "output_dir",
    "results": "output_dir",
    "results_dir": "output_dir",
    "cache": "cache_dir",
    "ood": "ood_retain",
    "retain_data": "ood_retain",
    "num_threads": "threads",
    "random_seed": "seed",
    "device": "model.device",
}


def _field_hint(error: ValidationError, model: type[BaseModel], known_extra: set[str]) -> str:
    first = first_error(error)
    if first["type"] == "extra_forbidden" and model is Spec and len(first["loc"]) == 1:
        alias = SECTION_ALIASES.get(str(first["loc"][0]).lower())
        if alias is not None:
            return f"; did you mean {alias!r}?"
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


def _resolve_named(raw: str | dict[str, Any], registry: Registry[Any], where: str) -> tuple[Any, object, Params]:
    """A ``name`` or ``{name: ..., **params}`` entry of ``registry``, validated."""
    values = {"name": raw} if isinstance(raw, str) else dict(raw)
    name = values.pop("name", None)
    if not isinstance(name, str):
        raise InputError(f"{where}.name: Field required (the {registry.kind}'s name)")
    info, plugin = registry.resolve(name, f"{where}.name")
    return info, plugin, _validate_params(info.params, values, where, {"name"})


def _resolve_localizer(
    raw: str | dict[str, Any] | None, default: str | None, plugins: Plugins, where: str
) -> ResolvedLocalizer | None:
    if raw is None:
        raw = default
    return None if raw is None else ResolvedLocalizer(*_resolve_named(raw, plugins.localizers, where))


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
        guard = (
            None
            if method.guard is None
            else ResolvedGuard(*_resolve_named(method.guard, plugins.guards, f"{where}.guard"))
        )
        label = method.row_label()
        # a guarded row trains as its unguarded twin would (same seed): the guard is the only difference
        seed_label = method.label or method.name
        seeds = method.seeds or spec.seeds
        run_seeds = None if seeds is None else tuple(seeds)
        methods.append(
            ResolvedMethod(label, info, plugin, params, localizer, seeds=run_seeds, guard=guard, seed_label=seed_label)
        )
        if method.ablate_localization:
            if localizer is None:
                raise InputError(
                    f"{where}.ablate_localization: the method has no localizer to ablate (set 'localizer')"
                )
            methods.append(
                ResolvedMethod(
                    ablation_label(label),
                    info,
                    plugin,
                    params,
                    None,
                    ablation_of=label,
                    seeds=run_seeds,
                    guard=guard,
                    seed_label=seed_label,
                )
            )
    ood_info = plugins.ood_sources.get(spec.ood_retain.source, "ood_retain.source")
    ood_params = _validate_params(
        ood_info.params, spec.ood_retain.model_extra or {}, "ood_retain", set(OodRetainSpec.model_fields)
    )
    executor_info, executor_plugin = plugins.executors.resolve(spec.execution.executor, "execution.executor")
    executor_params = _validate_params(
        executor_info.params, spec.execution.model_extra or {}, "execution", set(ExecutionSpec.model_fields)
    )
    executor = ResolvedExecutor(executor_info, executor_plugin, executor_params)
    return ResolvedSpec(spec, path, data_params, model_params, ood_params, methods, executor)


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


def _plugin_params(registry: Registry, name: Any) -> type[Params] | None:
    entry = registry.entries.get(name) if isinstance(name, str) else None
    return None if entry is None else entry[0].params


def anchor_spec_paths(raw: dict[str, Any], plugins: Plugins, base: Path) -> dict[str, Any]:
    """``raw`` with every relative path read from ``base`` (the spec's folder): the common
    fields (``output_dir``, ``cache_dir``, ``eval.general_data_dir``) and the path fields
    of the plugins the spec names (``data.path``, ``ood_retain.path``, model folders)."""
    raw = anchor_paths(Spec, raw, base)
    for section, registry, key, default in (
        ("data", plugins.data_sources, "source", DataSpec.model_fields["source"].default),
        ("model", plugins.model_sources, "source", ModelSpec.model_fields["source"].default),
        ("ood_retain", plugins.ood_sources, "source", OodRetainSpec.model_fields["source"].default),
        ("execution", plugins.executors, "executor", ExecutionSpec.model_fields["executor"].default),
    ):
        values = raw.get(section)
        params = _plugin_params(registry, values.get(key, default)) if isinstance(values, dict) else None
        if params is not None:
            raw[section] = anchor_paths(params, values, base)
    methods = raw.get("methods")
    if isinstance(methods, list):
        anchored = []
        for method in methods:
            params = _plugin_params(plugins.methods, method.get("name")) if isinstance(method, dict) else None
            if params is not None:
                method = anchor_paths(params, method, base)
                localizer = method.get("localizer")
                localizer_params = (
                    _plugin_params(plugins.localizers, localizer.get("name")) if isinstance(localizer, dict) else None
                )
                if localizer_params is not None:
                    method["localizer"] = anchor_paths(localizer_params, localizer, base)
                guard = method.get("guard")
                guard_params = _plugin_params(plugins.guards, guard.get("name")) if isinstance(guard, dict) else None
                if guard_params is not None:
                    method["guard"] = anchor_paths(guard_params, guard, base)
            anchored.append(method)
        raw["methods"] = anchored
    return raw


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def override_value(text: str) -> Any:
    """``--set``'s VALUE read as YAML (``3``, ``true``, ``[0, 1]``, ``{name: ga}``), with
    ``1e-4`` a number, as a reader expects (YAML 1.1 would read it as text)."""
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and _NUMBER.match(text.strip()):  # unquoted only: "1e3" in quotes stays text
        number = float(value)
        return number if math.isfinite(number) else value  # 8e65721 is a commit, not infinity
    return value


def apply_overrides(raw: dict[str, Any], overrides: typing.Sequence[str]) -> dict[str, Any]:
    """``raw`` with each ``KEY=VALUE`` set: KEY a dotted path (``methods.0.lr``,
    ``eval.max_new_tokens``, ``seed``), list entries by index; a missing mapping along
    the path is created, a missing list entry is an error. Setting another
    ``execution.executor`` than the spec's drops the spec's settings for its own."""
    import copy

    raw = copy.deepcopy(raw)
    for override in overrides:
        key, sep, text = override.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise InputError(f"--set {override!r}: expected KEY=VALUE with a dotted KEY (methods.0.lr=1e-4)")
        parts = key.split(".")
        node: Any = raw
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    indices = f"indices 0-{len(node) - 1}" if node else "no entries"
                    raise InputError(f"--set {key}: {'.'.join(parts[:depth])} is a list with {indices}, not {part!r}")
                index = int(part)
                if last:
                    node[index] = override_value(text)
                else:
                    if isinstance(node[index], str) and parts[depth - 1 : depth] == ["methods"]:
                        node[index] = {"name": node[index]}  # `- ga` written bare
                    node = node[index]
            elif isinstance(node, dict):
                if last and parts == ["execution", "executor"] and override_value(text) != node.get(part, "local"):
                    # another executor: the section's other settings were the spec's executor's
                    node.clear()
                    node[part] = override_value(text)
                elif last:
                    node[part] = override_value(text)
                else:
                    if node.get(part) is None:  # absent, or an empty section (`eval:`)
                        node[part] = {}
                    node = node[part]
            else:
                raise InputError(f"--set {key}: {'.'.join(parts[:depth])} is {yaml_kind(node)}, not a mapping or list")
    return raw


def _blame_override(message: str, overrides: typing.Sequence[str]) -> str:
    """``message`` naming the ``--set`` that put the bad value there, if one did."""
    for override in reversed(overrides):
        key = override.partition("=")[0].strip()
        if message.startswith((f"{key}:", f"{key}.")):
            return f"{message} (from --set {override})"
    return message


def _check_values(raw: dict[str, Any], source: str, overrides: typing.Sequence[str] = ()) -> None:
    """No NaN or infinite number and no NUL character anywhere (before paths are touched)."""
    bad = non_finite_field(raw)
    if bad is not None:
        message = f"{'.'.join(map(str, bad))}: must be a finite number"
        raise InputError(_blame_override(message, overrides), source=source)
    bad = nul_field(raw)
    if bad is not None:
        message = f"{'.'.join(map(str, bad)) or 'spec'}: must not contain a NUL character"
        raise InputError(_blame_override(message, overrides), source=source)


def parse_spec(
    raw: Any, plugins: Plugins, source: str = "spec", base: Path | None = None, overrides: typing.Sequence[str] = ()
) -> ResolvedSpec:
    """Validate a parsed spec with ``--set`` overrides applied. Relative paths written in
    the spec are read from ``base`` (the spec file's folder; default: the current
    directory), relative paths given with ``--set`` from the current directory."""
    if not isinstance(raw, dict):
        raise InputError("a spec must be a YAML mapping", source=source)
    _check_values(raw, source)
    raw = anchor_spec_paths(raw, plugins, base or Path.cwd())  # the file's paths: from its folder
    if overrides:
        raw = apply_overrides(raw, overrides)
        _check_values(raw, source, overrides)
        raw = anchor_spec_paths(raw, plugins, Path.cwd())  # --set paths: from the current directory
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as error:
        message = format_validation_error(error) + _field_hint(error, Spec, set())
        raise InputError(_blame_override(message, overrides), source=source) from None
    try:
        resolved = resolve(spec, plugins, Path(source) if source != "spec" else None)
    except InputError as error:
        raise InputError(_blame_override(str(error), overrides), source=source) from None
    defaulted = tuple(section for section in ("model", "data") if section not in raw)
    return dataclasses.replace(resolved, overrides=tuple(overrides), defaulted=defaulted)


def read_yaml_file(path: Path, what: str = "spec") -> Any:
    """A YAML file parsed; a missing, unreadable, non-UTF-8 or malformed file is one
    ``InputError`` line naming it (``what`` says what the file is: "spec", "build spec")."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise InputError(f"{what} file not found", source=str(path)) from None
    except OSError as error:
        raise InputError(f"cannot read {what} ({error.strerror})", source=str(path)) from None
    except UnicodeDecodeError as error:
        raise InputError(f"not UTF-8 text (byte {error.start})", source=str(path)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InputError(f"invalid YAML{where}: {getattr(error, 'problem', error)}", source=str(path)) from None


def load_spec(path: Path, plugins: Plugins, overrides: typing.Sequence[str] = ()) -> ResolvedSpec:
    """Read and validate a YAML spec (relative paths in it are read from its folder);
    every problem is one ``InputError`` line naming the file and the field."""
    raw = read_yaml_file(path)
    return parse_spec(raw, plugins, str(path), base=path.absolute().parent, overrides=overrides)
