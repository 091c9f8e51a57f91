"""The plugin manager: built-in plugins from one tuple, third-party ones from entry points.

As in datasette, the built-in modules are registered at start-up from
:data:`~knowundo_bench.plugin.kinds.BUILTIN_PLUGINS` (under their module names), then the ``knowundo_bench``
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

from knowundo_bench.core.errors import InputError
from knowundo_bench.plugin import hookspecs
from knowundo_bench.plugin.kinds import BUILTIN_PLUGINS, KINDS, PluginKind
from knowundo_bench.plugin.registry import Registry, unknown_name_message

ENTRY_POINT_GROUP = hookspecs.PROJECT


class Plugins:
    """The plugin manager plus one registry per plugin kind (:data:`~knowundo_bench.plugin.kinds.KINDS`),
    each built from its ``register_*`` hook: ``plugins.methods``, ``plugins.localizers``, ..."""

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self.manager = manager
        self.registries: dict[str, Registry[Any]] = {kind.attribute: self._collect(kind) for kind in KINDS}

    def __getattr__(self, attribute: str) -> Registry[Any]:
        registries = self.__dict__.get("registries", {})
        if attribute not in registries:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {attribute!r}")
        return registries[attribute]

    def _only(self, plugin: object, hook_name: str, keep: set[object] | None = None) -> Any:
        """A hook caller without the implementations of ``keep``'s other members
        (all other plugins when ``keep`` is None)."""
        pool = self.manager.get_plugins() if keep is None else keep
        return self.manager.subset_hook_caller(hook_name, remove_plugins=[p for p in pool if p is not plugin])

    def _collect(self, kind: PluginKind) -> Registry[Any]:
        """Call the kind's hook once per implementing plugin, so each offering is tied to
        the plugin that must later do the work."""
        registry: Registry[Any] = Registry(kind.kind)
        for impl in getattr(self.manager.hook, kind.hook).get_hookimpls():
            for offerings in self._only(impl.plugin, kind.hook)():
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
