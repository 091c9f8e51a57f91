"""A spec resolved against the plugins: every name it gives (data, model and OOD
sources, methods, localizers, guards, the executor) looked up in its registry and each
plugin's own fields validated against its parameter model, relative paths anchored to
the spec's folder and ``--set`` overrides applied. What a run starts from."""

from __future__ import annotations

import dataclasses
import importlib.util
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from knowundo_bench.config.overrides import apply_overrides
from knowundo_bench.config.params import Params
from knowundo_bench.config.paths import anchor_paths
from knowundo_bench.config.reading import blame_override, check_values, field_hint, read_yaml_file
from knowundo_bench.config.spec import (
    DataSpec,
    ExecutionSpec,
    MethodSpec,
    ModelSpec,
    OodRetainSpec,
    Spec,
    VanillaSpec,
    ablation_label,
)
from knowundo_bench.core.errors import InputError
from knowundo_bench.core.messages import format_validation_error
from knowundo_bench.plugin.manager import Plugins
from knowundo_bench.plugin.registry import (
    AttackInfo,
    ExecutorInfo,
    GuardInfo,
    LocalizerInfo,
    LoggerInfo,
    MethodInfo,
    ResolvedPlugin,
    validate_params,
)


@dataclass(frozen=True)
class ResolvedMethod:
    label: str
    info: MethodInfo
    plugin: object
    params: Params  # the method's own model, a TrainingParams for every built-in
    localizer: ResolvedPlugin[LocalizerInfo] | None
    ablation_of: str | None = None  # the localised method's label, for its control run
    seeds: tuple[int, ...] | None = None  # None: one run from the spec's `seed`, recorded as `<label>.json`
    guard: ResolvedPlugin[GuardInfo] | None = None
    seed_label: str | None = None  # what the method's seed derives from (default: its label)
    vanilla: VanillaSpec | None = None  # its own vanilla settings (None: the spec's)


@dataclass(frozen=True)
class ResolvedAttack:
    """One entry of ``eval.attacks``: its label (its columns and record section) and plugin."""

    label: str
    plugin: ResolvedPlugin[AttackInfo]


@dataclass(frozen=True)
class ResolvedSpec:
    """A validated spec with every plugin resolved and its parameters validated."""

    spec: Spec
    path: Path | None
    data_params: Params
    model_params: Params
    ood_params: Params
    methods: list[ResolvedMethod]
    executor: ResolvedPlugin[ExecutorInfo] | None = None  # None: run here, in order (as ``local``)
    overrides: tuple[str, ...] = ()  # --set KEY=VALUE, as given (the record keeps them)
    defaulted: tuple[str, ...] = ()  # sections the spec leaves out ("model", "data"): the embedded default runs
    attacks: tuple[ResolvedAttack, ...] = ()
    loggers: tuple[ResolvedPlugin[LoggerInfo], ...] = ()  # `logging` and --log-to: trackers fed each unit

    @property
    def runs_here(self) -> bool:
        """Whether the units run in this process (the local executor, or none), so that
        the device and the model are checked here."""
        return self.executor is None or self.executor.info.in_process

    @property
    def needs_ood_retain(self) -> bool:
        return any(m.info.retain == "out_of_distribution" for m in self.methods)

    def echo(self) -> dict[str, Any]:
        """The spec as records keep it and workers receive it: without ``logging`` (the
        trackers change nothing computed, and only the main process feeds them)."""
        return self.spec.model_dump(mode="json", exclude={"logging"})

    def plugin_params(self) -> list[tuple[str, Params]]:
        """Every plugin's validated parameters, each with the spec field it came from."""
        found: list[tuple[str, Params]] = [
            ("data", self.data_params),
            ("model", self.model_params),
            ("ood_retain", self.ood_params),
        ]
        for method in self.methods:
            found.append((f"methods[{method.label}]", method.params))
            found += [(f"methods[{method.label}].localizer", method.localizer.params)] if method.localizer else []
            found += [(f"methods[{method.label}].guard", method.guard.params)] if method.guard else []
        found += [(f"eval.attacks[{attack.label}]", attack.plugin.params) for attack in self.attacks]
        found += [(f"logging[{logger.info.name}]", logger.params) for logger in self.loggers]
        return found + ([("execution", self.executor.params)] if self.executor else [])


def _resolve_localizer(
    raw: str | dict[str, Any] | None, default: str | None, plugins: Plugins, where: str
) -> ResolvedPlugin[LocalizerInfo] | None:
    if raw is None:
        raw = default
    return None if raw is None else plugins.localizers.resolve_entry(raw, where)


def resolve(spec: Spec, plugins: Plugins, path: Path | None = None) -> ResolvedSpec:
    """Each plugin the spec names looked up and its parameters validated; a localised
    method with ``ablate_localization`` gains its all-parameters control."""
    data_info = plugins.data_sources.get(spec.data.source, "data.source")
    data_params = validate_params(data_info.params, spec.data.model_extra or {}, "data", set(DataSpec.model_fields))
    model_info = plugins.model_sources.get(spec.model.source, "model.source")
    model_params = validate_params(
        model_info.params, spec.model.model_extra or {}, "model", set(ModelSpec.model_fields)
    )
    methods: list[ResolvedMethod] = []
    for index, method in enumerate(spec.methods):
        where = f"methods.{index}"
        info, plugin = plugins.methods.resolve(method.name, f"{where}.name")
        params = validate_params(info.params, method.model_extra or {}, where, set(MethodSpec.model_fields))
        localizer = _resolve_localizer(method.localizer, info.default_localizer, plugins, f"{where}.localizer")
        guard = None if method.guard is None else plugins.guards.resolve_entry(method.guard, f"{where}.guard")
        label = method.row_label()
        # a guarded row trains as its unguarded twin would (same seed): the guard is the only difference
        seed_label = method.label or method.name
        seeds = method.seeds or spec.seeds
        run_seeds = None if seeds is None else tuple(seeds)
        vanilla = None if method.vanilla is None else spec.vanilla_of(method)
        if info.retrain is not None:  # an oracle: a vanilla fine-tuning of its own
            for field_name in ("localizer", "guard", "ablate_localization"):
                if getattr(method, field_name):
                    raise InputError(f"{where}.{field_name}: {method.name} is an oracle (no unlearning to change)")
            vanilla = spec.vanilla_of(method).merged(info.retrain)
        methods.append(
            ResolvedMethod(
                label,
                info,
                plugin,
                params,
                localizer,
                seeds=run_seeds,
                guard=guard,
                seed_label=seed_label,
                vanilla=vanilla,
            )
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
                    vanilla=vanilla,
                )
            )
    ood_info = plugins.ood_sources.get(spec.ood_retain.source, "ood_retain.source")
    ood_params = validate_params(
        ood_info.params, spec.ood_retain.model_extra or {}, "ood_retain", set(OodRetainSpec.model_fields)
    )
    executor_info, executor_plugin = plugins.executors.resolve(spec.execution.executor, "execution.executor")
    executor_params = validate_params(
        executor_info.params, spec.execution.model_extra or {}, "execution", set(ExecutionSpec.model_fields)
    )
    executor = ResolvedPlugin(executor_info, executor_plugin, executor_params)
    attacks = tuple(
        ResolvedAttack(
            attack.row_label,
            plugins.attacks.resolve_entry({"name": attack.name, **attack.params()}, f"eval.attacks.{index}"),
        )
        for index, attack in enumerate(spec.eval.attacks)
    )
    loggers = tuple(resolve_logger(entry, plugins, f"logging.{index}") for index, entry in enumerate(spec.logging))
    return ResolvedSpec(
        spec, path, data_params, model_params, ood_params, methods, executor, attacks=attacks, loggers=loggers
    )


def resolve_logger(entry: str | dict[str, Any], plugins: Plugins, where: str) -> ResolvedPlugin[LoggerInfo]:
    """A ``logging`` entry (``where``: ``logging.0``) or a ``--log-to`` name (``where``:
    ``--log-to``) resolved, its library present: a missing extra fails now, not after
    the training."""
    if where == "--log-to" and isinstance(entry, str):
        info, plugin = plugins.loggers.resolve(entry, where)
        logger = ResolvedPlugin(info, plugin, validate_params(info.params, {}, where, {"name"}))
        name_field = where
    else:
        logger = plugins.loggers.resolve_entry(entry, where)
        name_field = f"{where}.name"
    module, name = logger.info.requires, logger.info.name
    if module is not None and importlib.util.find_spec(module) is None:
        raise InputError(f"{name_field}: logger {name!r} needs {module}: pip install 'knowundo-bench[{name}]'")
    return logger


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
        params = registry.params_of(values.get(key, default)) if isinstance(values, dict) else None
        if params is not None:
            raw[section] = anchor_paths(params, values, base)
    methods = raw.get("methods")
    if isinstance(methods, list):
        anchored = []
        for method in methods:
            params = plugins.methods.params_of(method.get("name")) if isinstance(method, dict) else None
            if params is not None:
                method = anchor_paths(params, method, base)
                localizer = method.get("localizer")
                localizer_params = (
                    plugins.localizers.params_of(localizer.get("name")) if isinstance(localizer, dict) else None
                )
                if localizer_params is not None:
                    method["localizer"] = anchor_paths(localizer_params, localizer, base)
                guard = method.get("guard")
                guard_params = plugins.guards.params_of(guard.get("name")) if isinstance(guard, dict) else None
                if guard_params is not None:
                    method["guard"] = anchor_paths(guard_params, guard, base)
            anchored.append(method)
        raw["methods"] = anchored
    return raw


def parse_spec(
    raw: Any,
    plugins: Plugins,
    source: str = "spec",
    base: Path | None = None,
    overrides: typing.Sequence[str] = (),
    log_to: typing.Sequence[str] = (),
) -> ResolvedSpec:
    """Validate a parsed spec with ``--set`` overrides applied and the loggers of
    ``--log-to`` added (those the spec's ``logging`` does not name already). Relative
    paths written in the spec are read from ``base`` (the spec file's folder; default:
    the current directory), relative paths given with ``--set`` from the current directory."""
    if not isinstance(raw, dict):
        raise InputError("a spec must be a YAML mapping", source=source)
    check_values(raw, source)
    raw = anchor_spec_paths(raw, plugins, base or Path.cwd())  # the file's paths: from its folder
    if overrides:
        raw = apply_overrides(raw, overrides)
        check_values(raw, source, overrides)
        raw = anchor_spec_paths(raw, plugins, Path.cwd())  # --set paths: from the current directory
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as error:
        message = format_validation_error(error) + field_hint(error, Spec, set())
        raise InputError(blame_override(message, overrides), source=source) from None
    try:
        resolved = resolve(spec, plugins, Path(source) if source != "spec" else None)
    except InputError as error:
        raise InputError(blame_override(str(error), overrides), source=source) from None
    defaulted = tuple(section for section in ("model", "data") if section not in raw)
    named = {logger.info.name for logger in resolved.loggers}
    added = tuple(resolve_logger(name, plugins, "--log-to") for name in dict.fromkeys(log_to) if name not in named)
    return dataclasses.replace(
        resolved, overrides=tuple(overrides), defaulted=defaulted, loggers=resolved.loggers + added
    )


def load_spec(
    path: Path, plugins: Plugins, overrides: typing.Sequence[str] = (), log_to: typing.Sequence[str] = ()
) -> ResolvedSpec:
    """Read and validate a YAML spec (relative paths in it are read from its folder);
    every problem is one ``InputError`` line naming the file and the field."""
    raw = read_yaml_file(path)
    return parse_spec(raw, plugins, str(path), base=path.absolute().parent, overrides=overrides, log_to=log_to)
