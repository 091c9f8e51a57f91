"""This process and machine, checked before the work: torch's threads, ``model.device``
here, and the model source's factory (a missing model fails before any data is read)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property

import torch
import transformers

from knowundo_bench.core.errors import InputError, reported_as_input
from knowundo_bench.modeling.bundles import ModelFactory
from knowundo_bench.modeling.devices import resolve_device
from knowundo_bench.plugin.manager import Plugins
from knowundo_bench.run.resolution import ResolvedSpec
from knowundo_bench.run.vanilla import cache_root


def default_threads(local_processes: int = 1) -> int:
    """torch's threads where the spec sets none: ``OMP_NUM_THREADS`` where it is set (the
    convention torch itself follows; runs side by side on one machine, as ``make mutate``'s
    workers, would otherwise each take every core), else the cores this machine's
    processes share."""
    configured = os.environ.get("OMP_NUM_THREADS", "").strip()
    if configured.isdigit() and int(configured) >= 1:
        return int(configured)
    return max(1, (os.cpu_count() or 1) // local_processes)


def prepare_process(threads: int) -> None:
    transformers.utils.logging.disable_progress_bar()  # our own bars only
    torch.set_num_threads(threads)


def check_device(resolved: ResolvedSpec) -> torch.device:
    """``model.device`` on this machine, or one line naming the spec and the field."""
    try:
        return resolve_device(resolved.spec.model.device)
    except InputError as error:
        raise InputError(str(error), source=None if resolved.path is None else str(resolved.path)) from None


def model_factory(resolved: ResolvedSpec, plugins: Plugins) -> ModelFactory:
    """The model source's factory, made before any data is read, so that a model that
    cannot be had (a missing folder, a hub name neither cached nor reachable) fails first."""
    spec = resolved.spec
    source = plugins.model_sources.get(spec.model.source, "model.source")
    with reported_as_input(f"model ({spec.model.source}): cannot prepare the model"):
        return source.factory(resolved.model_params, cache_root(resolved))


@dataclass
class Machine:
    """The device and the model factory this process runs units with, each checked the
    first time it is needed (a fresh run asks for both before reading any data; a
    cluster's driver, which runs no unit, never does)."""

    resolved: ResolvedSpec
    plugins: Plugins

    @cached_property
    def device(self) -> torch.device:
        return check_device(self.resolved)

    @cached_property
    def factory(self) -> ModelFactory:
        return model_factory(self.resolved, self.plugins)

    def check(self) -> None:
        """Fail now, in one line, if this machine cannot run the units."""
        self.device, self.factory  # noqa: B018 (checked once, kept)
