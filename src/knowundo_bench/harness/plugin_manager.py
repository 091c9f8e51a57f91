"""The plugin manager: built-in plugins from one tuple, third-party ones from entry points.

As in datasette, the built-in modules are registered at start-up from
:data:`BUILTIN_PLUGINS` (under their module names), then the ``knowundo_bench``
entry-point group is loaded. Built-ins are not declared as entry points: one list, and
a source checkout without installed metadata works the same as an installed wheel.
Built-ins are otherwise ordinary plugins: they implement the same hooks and import only
from :mod:`knowundo_bench.api`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from functools import lru_cache
from typing import Any

import pluggy

from knowundo_bench.harness import hookspecs
from knowundo_bench.harness.errors import InputError
from knowundo_bench.harness.registry import (
    DataSourceInfo,
    ExecutorInfo,
    GeneratorInfo,
    GuardInfo,
    LocalizerInfo,
    MethodInfo,
    ModelSourceInfo,
    OodSourceInfo,
    Registry,
    unknown_name_message,
)

ENTRY_POINT_GROUP = hookspecs.PROJECT

# Every built-in plugin, by kind; each file is named after what it registers.
BUILTIN_PLUGINS: tuple[str, ...] = (
    *(
        f"knowundo_bench.plugins.methods.{name}"
        for name in (
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
        )
    ),
    *(f"knowundo_bench.plugins.localizers.{name}" for name in ("memflex", "memflex_fast", "memflex_neurons")),
    *(f"knowundo_bench.plugins.data.{name}" for name in ("synthetic", "local", "hub")),
    *(f"knowundo_bench.plugins.ood.{name}" for name in ("synthetic_text", "text_file", "general_qa", "hub_text")),
    *(f"knowundo_bench.plugins.models.{name}" for name in ("tiny", "hf", "gguf")),
    *(f"knowundo_bench.plugins.executors.{name}" for name in ("local", "ray")),
    *(f"knowundo_bench.plugins.guards.{name}" for name in ("scope_classifier",)),
    *(f"knowundo_bench.plugins.generators.{name}" for name in ("template", "hf", "openai")),
)


class Plugins:
    """The plugin manager plus the registries built from its ``register_*`` hooks."""

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self.manager = manager
        self.methods: Registry[MethodInfo] = self._collect("register_methods", "method")
        self.localizers: Registry[LocalizerInfo] = self._collect("register_localizers", "localizer")
        self.data_sources: Registry[DataSourceInfo] = self._collect("register_data_sources", "data source")
        self.ood_sources: Registry[OodSourceInfo] = self._collect("register_ood_sources", "OOD retain source")
        self.model_sources: Registry[ModelSourceInfo] = self._collect("register_model_sources", "model source")
        self.executors: Registry[ExecutorInfo] = self._collect("register_executors", "executor")
        self.guards: Registry[GuardInfo] = self._collect("register_guards", "guard")
        self.generators: Registry[GeneratorInfo] = self._collect("register_generators", "generator")

    def _only(self, plugin: object, hook_name: str, keep: set[object] | None = None) -> Any:
        """A hook caller without the implementations of ``keep``'s other members
        (all other plugins when ``keep`` is None)."""
        pool = self.manager.get_plugins() if keep is None else keep
        return self.manager.subset_hook_caller(hook_name, remove_plugins=[p for p in pool if p is not plugin])

    def _collect(self, hook_name: str, kind: str) -> Registry[Any]:
        """Call ``hook_name`` once per implementing plugin, so each offering is tied to
        the plugin that must later do the work."""
        registry: Registry[Any] = Registry(kind)
        for impl in getattr(self.manager.hook, hook_name).get_hookimpls():
            for offerings in self._only(impl.plugin, hook_name)():
                for info in offerings or []:
                    registry.add(info, impl.plugin, impl.plugin_name)
        return registry

    def call_on(self, provider: object, hook_name: str, registry: Registry[Any], **kwargs: Any) -> Any:
        """Call ``hook_name`` with the implementations of the other providers in
        ``registry`` left out: the plugin manager dispatches by name, and plugins that
        only observe or wrap the hook (tracing, timing) still take part."""
        providers = {plugin for _, plugin in registry.entries.values()}
        result = self._only(provider, hook_name, providers)(**kwargs)
        if result is None:
            name = self.manager.get_name(provider)
            raise RuntimeError(f"plugin {name!r} registered a name but its {hook_name} hook returned nothing")
        return result

    def call_executor(self, executor: Any, suite: Any) -> None:
        """Run ``suite``'s pending units with the resolved ``executor`` (an executor
        registers a function: no hook dispatch is needed)."""
        executor.info.execute(executor.params, suite)

    def origin(self, plugin: object) -> str:
        """Where a plugin came from: 'built-in', or 'dist-name version'."""
        name = self.manager.get_name(plugin)
        if name in BUILTIN_PLUGINS:
            return "built-in"
        for registered, dist in self.manager.list_plugin_distinfo():
            if registered is plugin:
                return f"{dist.project_name} {dist.version}"
        return "registered at run time"


DISABLE_AUTOLOAD_ENV = "KNOWUNDO_BENCH_DISABLE_PLUGIN_AUTOLOAD"
ALLOW_LIST_ENV = "KNOWUNDO_BENCH_PLUGINS"


def _load_third_party(manager: pluggy.PluginManager) -> None:
    """Entry points of the ``knowundo_bench`` group, unless
    ``KNOWUNDO_BENCH_DISABLE_PLUGIN_AUTOLOAD=1``; with ``KNOWUNDO_BENCH_PLUGINS=a,b`` only
    those entry-point names (built-ins are always registered)."""
    if os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip() not in ("", "0"):
        return
    allowed = [n.strip() for n in os.environ.get(ALLOW_LIST_ENV, "").split(",") if n.strip()]
    if not allowed:
        manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        return
    available = {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    for name in allowed:
        if name not in available:
            raise InputError(unknown_name_message("plugin", name, sorted(available)), source=ALLOW_LIST_ENV)
        manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=name)


def make_plugin_manager(*extra_plugins: object, load_entry_points: bool = True) -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    for module in BUILTIN_PLUGINS:
        manager.register(importlib.import_module(module), name=module)
    if load_entry_points:
        _load_third_party(manager)
    for plugin in extra_plugins:
        manager.register(plugin)
    manager.check_pending()
    return manager


@lru_cache(maxsize=1)
def get_plugins() -> Plugins:
    """The process-wide plugins (built-ins plus installed entry points)."""
    return Plugins(make_plugin_manager())
