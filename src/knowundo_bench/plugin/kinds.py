"""The plugin kinds, declared once: what each kind registers, through which hook, where a
spec names it, and its built-in plugins.

The plugin manager builds one registry per row, the ``methods`` command prints one table
per row, :mod:`knowundo_bench.api` exports each row's ``Info`` type and the tests check
each row's hook is a hookspec. Adding a kind is a row here; its ``register_*`` hookspec
(with its section in docs/plugins.md); its ``Info`` type in
:mod:`~knowundo_bench.plugin.registry` (and in that module's ``Info`` type variable),
imported by :mod:`knowundo_bench.api`; and its plugins' folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from knowundo_bench.plugin.registry import (
    AttackInfo,
    DataSourceInfo,
    ExecutorInfo,
    GeneratorInfo,
    GuardInfo,
    LocalizerInfo,
    LoggerInfo,
    MethodInfo,
    ModelSourceInfo,
    OodSourceInfo,
)

BUILTIN_PACKAGE = "knowundo_bench.plugins"


@dataclass(frozen=True)
class PluginKind:
    """One kind of plugin offering."""

    attribute: str  # the registry's name on ``Plugins`` (``plugins.methods``)
    kind: str  # what one offering is called in messages ("unknown method 'gaa'")
    hook: str  # the ``register_*`` hook that offers it
    info: type[Any]  # the descriptor the hook returns a list of
    spec_field: str  # where a spec names one
    title: str  # what the ``methods`` command calls them
    builtins: tuple[str, ...]  # the built-in modules, in plugins/<folder>/
    folder: str

    def builtin_modules(self) -> tuple[str, ...]:
        return tuple(f"{BUILTIN_PACKAGE}.{self.folder}.{name}" for name in self.builtins)

    @property
    def heading(self) -> str:
        """The ``methods`` command's heading of this kind's table."""
        return f"{self.title} ({self.spec_field})"


KINDS: tuple[PluginKind, ...] = (
    PluginKind(
        attribute="methods",
        kind="method",
        hook="register_methods",
        info=MethodInfo,
        spec_field="methods[].name",
        title="Methods",
        folder="methods",
        builtins=(
            "ga",
            "ga_gd",
            "ga_gd_ood",
            "ga_kl",
            "ga_kl_ood",
            "random_labels",
            "adversarial",
            "memflex",
            "npo",
            "npo_gd",
            "simnpo",
            "none",
            "retrain",
        ),
    ),
    PluginKind(
        attribute="localizers",
        kind="localizer",
        hook="register_localizers",
        info=LocalizerInfo,
        spec_field="methods[].localizer",
        title="Localizers",
        folder="localizers",
        builtins=("memflex", "memflex_fast", "memflex_neurons"),
    ),
    PluginKind(
        attribute="guards",
        kind="guard",
        hook="register_guards",
        info=GuardInfo,
        spec_field="methods[].guard",
        title="Guards",
        folder="guards",
        builtins=("scope_classifier",),
    ),
    PluginKind(
        attribute="attacks",
        kind="attack",
        hook="register_attacks",
        info=AttackInfo,
        spec_field="eval.attacks[].name",
        title="Attacks",
        folder="attacks",
        builtins=("quantize", "relearn"),
    ),
    PluginKind(
        attribute="data_sources",
        kind="data source",
        hook="register_data_sources",
        info=DataSourceInfo,
        spec_field="data.source",
        title="Data sources",
        folder="data",
        builtins=("synthetic", "local", "hub"),
    ),
    PluginKind(
        attribute="ood_sources",
        kind="OOD retain source",
        hook="register_ood_sources",
        info=OodSourceInfo,
        spec_field="ood_retain.source",
        title="OOD retain sources",
        folder="ood",
        builtins=("synthetic_text", "text_file", "general_qa", "hub_text"),
    ),
    PluginKind(
        attribute="model_sources",
        kind="model source",
        hook="register_model_sources",
        info=ModelSourceInfo,
        spec_field="model.source",
        title="Model sources",
        folder="models",
        builtins=("tiny", "hf", "gguf"),
    ),
    PluginKind(
        attribute="executors",
        kind="executor",
        hook="register_executors",
        info=ExecutorInfo,
        spec_field="execution.executor",
        title="Executors",
        folder="executors",
        builtins=("local", "ray"),
    ),
    PluginKind(
        attribute="generators",
        kind="generator",
        hook="register_generators",
        info=GeneratorInfo,
        spec_field="generator.name in a build spec",
        title="Generators",
        folder="generators",
        builtins=("template", "hf", "openai"),
    ),
    PluginKind(
        attribute="loggers",
        kind="logger",
        hook="register_loggers",
        info=LoggerInfo,
        spec_field="logging[].name",
        title="Loggers",
        folder="loggers",
        builtins=("trackio", "wandb", "mlflow"),
    ),
)

# Every built-in plugin module, registered at start-up under its module name.
BUILTIN_PLUGINS: tuple[str, ...] = tuple(module for kind in KINDS for module in kind.builtin_modules())
