"""What plugins register (one ``Info`` descriptor per kind), the registry of one kind's
offerings with "did you mean" lookup, and a plugin resolved with validated parameters."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from pydantic import ValidationError

from knowundo_bench.config.params import Params
from knowundo_bench.config.reading import field_hint
from knowundo_bench.core.errors import InputError
from knowundo_bench.core.messages import format_validation_error

RetainKind = Literal["in_distribution", "out_of_distribution"]


@dataclass(frozen=True)
class MethodInfo:
    """An unlearning method (objective) as specs name it.

    ``retain`` says which retain data its ``unlearn`` hook receives: the benchmark's
    Retention Scope (train split), or passages from the spec's ``ood_retain`` source.
    """

    name: str
    description: str
    params: type[Params]
    default_localizer: str | None = None
    retain: RetainKind = "in_distribution"
    retrain: dict[str, Any] | None = None  # an oracle: a vanilla fine-tuning with these `vanilla` settings changed

    @property
    def oracle(self) -> bool:
        """Whether the method is no unlearning but a model fine-tuned anew (``retrain``:
        without the Unlearn Scope), the reference a method is measured against."""
        return self.retrain is not None


@dataclass(frozen=True)
class LocalizerInfo:
    """A localizer: chooses the parameters a method may update."""

    name: str
    description: str
    params: type[Params]


@dataclass(frozen=True)
class DataSourceInfo:
    """A source of benchmark QA pairs; ``load(params, domain)`` returns QA pairs.

    ``more_instances(params, k)``, for sources that generate their data, returns the
    parameters that generate ``k`` instances more (``data.holdout_instances`` sets them
    aside); without it the holdout is the source's own last instances."""

    name: str
    description: str
    params: type[Params]
    load: Callable[..., Any]
    more_instances: Callable[[Any, int], Any] | None = None


@dataclass(frozen=True)
class OodSourceInfo:
    """A source of out-of-distribution retain data; ``load(params)`` returns
    :class:`~knowundo_bench.benchmark.pairs.RetainText` passages."""

    name: str
    description: str
    params: type[Params]
    load: Callable[..., Any]


@dataclass(frozen=True)
class ModelSourceInfo:
    """A source of models; ``factory(params, cache_dir)`` returns a
    :class:`~knowundo_bench.modeling.bundles.ModelFactory` (``cache_dir`` is where a source
    may keep converted weights)."""

    name: str
    description: str
    params: type[Params]
    factory: Callable[..., Any]


@dataclass(frozen=True)
class ExecutorInfo:
    """How a suite's units run: ``execute(params, suite)`` runs every pending unit of a
    :class:`~knowundo_bench.plugin.execution.Suite`, here or elsewhere (each unit writes
    its own record). ``in_process``: the units run in this process, so the device and
    the model are checked here before any data is read (a cluster's driver may have
    neither the GPU nor the model its workers use)."""

    name: str
    description: str
    params: type[Params]
    execute: Callable[..., Any]
    in_process: bool = False


@dataclass(frozen=True)
class GuardInfo:
    """A request filter in front of the model: ``fit(params, context)`` trains or
    configures it from a :class:`~knowundo_bench.evaluate.guarding.GuardContext` and returns
    a :class:`~knowundo_bench.evaluate.guarding.Guard` (which requests it refuses)."""

    name: str
    description: str
    params: type[Params]
    fit: Callable[..., Any]


@dataclass(frozen=True)
class AttackInfo:
    """An attack on a model after unlearning (``eval.attacks``): ``apply(params, model,
    context)`` changes ``model``, a copy of the unlearned (or vanilla, or oracle) model,
    and returns an :class:`~knowundo_bench.train.attacking.AttackOutcome` (the details
    worth recording, and the attacked model when it is another object); the harness then
    measures the scope metrics again on it. ``context`` is an
    :class:`~knowundo_bench.train.attacking.AttackContext`."""

    name: str
    description: str
    params: type[Params]
    apply: Callable[..., Any]


@dataclass(frozen=True)
class GeneratorInfo:
    """A text generator for ``knowundo-bench build``: ``create(params, context)`` returns a
    :class:`~knowundo_bench.build.generation.Generator` (prompts in, texts out)
    from its validated parameters and a
    :class:`~knowundo_bench.build.generation.GeneratorContext`. ``cached``: its
    answers are kept on disk by prompt and settings, so an interrupted build pays for
    none twice (false for generators that cost nothing, such as ``template``)."""

    name: str
    description: str
    params: type[Params]
    create: Callable[..., Any]
    cached: bool = True


@dataclass(frozen=True)
class LoggerInfo:
    """An experiment tracker (``logging`` in a spec, ``--log-to`` on the command line):
    ``create(params, context)`` returns a :class:`~knowundo_bench.tracking.contract.Logger`
    from its validated parameters and a
    :class:`~knowundo_bench.tracking.contract.LoggerContext`. ``requires``: the module
    its library installs, checked when the spec is read, so that a missing extra
    (``pip install 'knowundo-bench[wandb]'``) fails before any training."""

    name: str
    description: str
    params: type[Params]
    create: Callable[..., Any]
    requires: str | None = None


Info = TypeVar(
    "Info",
    MethodInfo,
    LocalizerInfo,
    DataSourceInfo,
    OodSourceInfo,
    ModelSourceInfo,
    ExecutorInfo,
    GuardInfo,
    GeneratorInfo,
    AttackInfo,
    LoggerInfo,
)


@dataclass
class Registry(Generic[Info]):
    """Named plugin offerings of one kind, each with the plugin object that provides it."""

    kind: str
    entries: dict[str, tuple[Info, object]] = field(default_factory=dict)

    def add(self, info: Info, plugin: object, plugin_name: str) -> None:
        if info.name in self.entries:
            _, other = self.entries[info.name]
            raise InputError(f"{self.kind} {info.name!r} is registered twice (plugin {plugin_name!r} and {other!r})")
        self.entries[info.name] = (info, plugin)

    def names(self) -> list[str]:
        return list(self.entries)

    def get(self, name: str, field_name: str) -> Info:
        return self.resolve(name, field_name)[0]

    def resolve(self, name: str, field_name: str) -> tuple[Info, object]:
        try:
            return self.entries[name]
        except KeyError:
            raise InputError(unknown_name_message(self.kind, name, self.names()), source=field_name) from None

    def resolve_entry(self, raw: str | dict[str, Any], where: str) -> ResolvedPlugin[Info]:
        """A ``name`` or ``{name: ..., **params}`` entry of a spec, its parameters validated."""
        values = {"name": raw} if isinstance(raw, str) else dict(raw)
        name = values.pop("name", None)
        if not isinstance(name, str):
            raise InputError(f"{where}.name: Field required (the {self.kind}'s name)")
        info, plugin = self.resolve(name, f"{where}.name")
        return ResolvedPlugin(info, plugin, validate_params(info.params, values, where, {"name"}))

    def params_of(self, name: Any) -> type[Params] | None:
        """The parameter model of ``name``, or None when no such offering is registered."""
        entry = self.entries.get(name) if isinstance(name, str) else None
        return None if entry is None else entry[0].params


def validate_params(model: type[Params], values: dict[str, Any], where: str, common: set[str]) -> Params:
    """``values`` validated against a plugin's parameter model; one line naming the field
    (``where``: the spec section), with a "did you mean" among the model's fields and
    ``common`` (the section's own fields) on an unknown one."""
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise InputError(format_validation_error(error, where) + field_hint(error, model, common)) from None


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}{hint} (available: {', '.join(sorted(known)) or 'none'})"


@dataclass(frozen=True)
class ResolvedPlugin(Generic[Info]):
    """A named offering looked up in its registry: what it registered, the plugin that
    does its work, and its parameters validated against its model."""

    info: Info
    plugin: object
    params: Params
