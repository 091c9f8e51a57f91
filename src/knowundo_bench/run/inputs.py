"""A run's inputs, loaded before any training so that bad input fails fast: the
benchmark, and the retain data of each kind the methods use."""

from __future__ import annotations

import random
from dataclasses import dataclass

from knowundo_bench.benchmark.pairs import Benchmark, QAPair, RetainText, check_out_of_distribution, first_instances
from knowundo_bench.core.errors import InputError, reported_as_input
from knowundo_bench.core.hub import require_hub
from knowundo_bench.core.progress import ProgressBoard
from knowundo_bench.evaluate.general.tasks import offline_task_configs
from knowundo_bench.plugin.manager import Plugins
from knowundo_bench.plugin.registry import RetainKind
from knowundo_bench.run.resolution import ResolvedSpec

# What a spec that leaves out `model:` or `data:` runs, said once in the log.
DEFAULT_NOTES = {
    "model": "model: not set, using the embedded tiny model (a ~1M-parameter Llama trained here)",
    "data": "data: not set, using the embedded synthetic fictitious authors (privacy domain)",
}


@dataclass(frozen=True)
class RunInputs:
    """The benchmark, and each kind of retain data (empty when no method uses it)."""

    benchmark: Benchmark
    in_distribution: list[QAPair]
    out_of_distribution: list[RetainText]

    def retain(self, kind: RetainKind) -> list[QAPair] | list[RetainText]:
        """What a method registered with ``retain=kind`` trains on as retain data (a
        ``KeyError`` for another kind, before anything is fitted or trained)."""
        kinds: dict[str, list[QAPair] | list[RetainText]] = {
            "in_distribution": self.in_distribution,
            "out_of_distribution": self.out_of_distribution,
        }
        return kinds[kind]


def load_benchmark(resolved: ResolvedSpec, plugins: Plugins) -> Benchmark:
    spec = resolved.spec
    source = plugins.data_sources.get(spec.data.source, "data.source")
    with reported_as_input(f"data ({spec.data.source}): cannot load the data"):
        pairs = source.load(resolved.data_params, spec.data.domain)
    if spec.data.instances is not None:
        pairs = first_instances(pairs, spec.data.instances)
    benchmark = Benchmark(tuple(pairs))
    benchmark.check_complete(f"data ({spec.data.source})")
    return benchmark


def load_ood_retain(resolved: ResolvedSpec, plugins: Plugins, benchmark: Benchmark) -> list[RetainText]:
    """The out-of-distribution retain passages, checked to hold no benchmark text."""
    spec = resolved.spec.ood_retain
    source = f"ood_retain ({spec.source})"
    with reported_as_input(f"{source}: cannot load the passages"):
        texts = list(plugins.ood_sources.get(spec.source, "ood_retain.source").load(resolved.ood_params))
    if not texts:
        raise InputError("the source returned no passages", source=source)
    if spec.max_examples is not None and len(texts) > spec.max_examples:
        texts = random.Random(resolved.spec.seed).sample(texts, spec.max_examples)
    check_out_of_distribution(texts, benchmark.pairs, source)
    return texts


def load_inputs(resolved: ResolvedSpec, plugins: Plugins, board: ProgressBoard) -> RunInputs:
    """The benchmark and the retain data of each kind, and the general tasks' files
    checked (loaded before any training, so that bad input fails fast)."""
    spec = resolved.spec
    for section in resolved.defaulted:
        board.log(DEFAULT_NOTES[section])
    benchmark = load_benchmark(resolved, plugins)
    board.log(
        f"data: {len(benchmark.instances)} instances, forget {len(benchmark.forget)}, retain "
        f"{len(benchmark.retain)}, val {len(benchmark.unlearn_val)}+{len(benchmark.retention_val)}"
    )
    general = spec.eval.general
    if general is not None and spec.eval.general_data_dir is not None:
        offline_task_configs(list(general.tasks), spec.eval.general_data_dir)  # missing files: fail now
    elif general is not None:
        require_hub("eval.general (lm-eval's tasks read the hub; eval.general_data_dir reads local files)")
    ood: list[RetainText] = []
    if resolved.needs_ood_retain:
        ood = load_ood_retain(resolved, plugins, benchmark)
        board.log(f"out-of-distribution retain data: {len(ood)} passages ({spec.ood_retain.source})")
    return RunInputs(benchmark, benchmark.retain, ood)
