"""How often the fast MemFlex localizer selects what the faithful one selects, on a
spec's trained vanilla model, over several seeds.

    python benchmarks/localizer_agreement.py benchmark_specs/paper-privacy-tiny.yaml --seeds 3
    python benchmarks/localizer_agreement.py benchmark_specs/smollm2-privacy.yaml --seeds 2

Uses the spec's data, model source and cached vanilla model (trained first if the cache
has none) and the localizer settings of the spec's first ``memflex`` method. Prints, per
seed, the seconds of each localizer and the Jaccard similarity of their selected
tensors, plus the faithful localizer's own agreement across seeds (how much the random
draws alone move the selection), then ``name=value`` summary lines.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import torch

from knowundo_bench.modeling.devices import resolve_device
from knowundo_bench.plugin.manager import get_plugins
from knowundo_bench.plugins.localizers import memflex as memflex_localizer
from knowundo_bench.plugins.localizers import memflex_fast
from knowundo_bench.run.inputs import load_benchmark
from knowundo_bench.run.resolution import load_spec
from knowundo_bench.run.vanilla import build_encoder, cache_root, prepare_vanilla
from knowundo_bench.train.context import UnlearnContext
from knowundo_bench.train.hook_types import LocalizerRun


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    plugins = get_plugins()
    resolved = load_spec(args.spec, plugins)
    spec = resolved.spec
    torch.set_num_threads(spec.threads or torch.get_num_threads())
    method = next(m for m in resolved.methods if m.localizer is not None and m.localizer.info.name == "memflex")
    params = method.localizer.params
    benchmark = load_benchmark(resolved, plugins)
    source = plugins.model_sources.get(spec.model.source, "model.source")
    factory = source.factory(resolved.model_params, cache_root(resolved))
    vanilla = prepare_vanilla(resolved, factory, benchmark, resolve_device(spec.model.device))
    model = vanilla.bundle.model
    context = UnlearnContext(encoder=build_encoder(resolved, vanilla.bundle.tokenizer), seed=0, domain=spec.data.domain)

    faithful: list[set[str]] = []
    fast: list[set[str]] = []
    for seed in range(args.seeds):
        timings = []
        for plugin, selections in ((memflex_localizer, faithful), (memflex_fast, fast)):
            run = LocalizerRun(plugin.__name__.rsplit(".", 1)[1], params, seed)
            started = time.perf_counter()
            result = plugin.localize(
                localizer=run, model=model, forget=benchmark.forget, retain=benchmark.retain, context=context
            )
            timings.append(time.perf_counter() - started)
            selections.append(set(result.selected))
        print(
            f"# seed {seed}: faithful {timings[0]:.1f}s ({len(faithful[-1])} tensors), fast {timings[1]:.1f}s "
            f"({len(fast[-1])} tensors), Jaccard {jaccard(faithful[-1], fast[-1]):.3f}",
            flush=True,
        )
    agreement = [jaccard(a, b) for a, b in zip(faithful, fast, strict=True)]
    across = [jaccard(a, b) for a, b in itertools.combinations(faithful, 2)]
    total = sum(1 for p in model.parameters() if p.requires_grad)
    print(
        f"# {spec.name}: {len(benchmark.forget)} forget + {len(benchmark.retain)} retain pairs, {total} candidate "
        f"tensors, mu={params.mu}, sigma={params.sigma}, sigma_percentile={params.sigma_percentile}, "
        f"n_passes={params.n_passes}"
    )
    print(f"localize_fast_agreement={statistics.mean(agreement):.3f}")
    print(f"localize_fast_agreement_min={min(agreement):.3f}")
    if across:
        print(f"localize_faithful_seed_agreement={statistics.mean(across):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
