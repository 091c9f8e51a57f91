"""The paper's full grid on N workers, projected from measured unit costs.

    python benchmarks/scale.py RESULTS_DIR [--workers 1 8 64] [--domains 2] [--models 2] [--seeds 5]
    python benchmarks/scale.py --table5 TABLE5_OUTPUT [--eval-seconds S] [...]

The paper's tables are a grid: 2 domains x 2 models x 8 methods x 5 seeds, each method
unit starting from its (domain, model) vanilla model. This replays the Ray executor's
schedule on N identical workers (one unit per worker at a time): the vanilla units
first (they are on the critical path), then each method unit as soon as its vanilla
model exists, longest first, as ``execution.executor: ray`` submits them. Unit costs
are the median wall seconds per method of the records in RESULTS_DIR (a method the
directory lacks costs the median of those it has). Prints the makespan, the speed-up
over one worker and the scaling efficiency (speed-up / N).

``--table5`` takes the costs from ``benchmarks/table5.py``'s printed table instead (its
s/step per method at the 7B shape): a method unit is its s/step times its steps on the
privacy domain (400 forget examples, batch 1 x 16, 2 epochs: 50 steps; with the retain
examples mixed in, 100), plus ``--eval-seconds``; the vanilla unit is 170 steps of 64
examples (1,059 pairs, batch 16 x 4, 10 epochs) at 4 times GA's s/step (4 times its
examples per step), an estimate.
"""

from __future__ import annotations

import argparse
import heapq
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from knowundo_bench.records.files import load_record

PAPER_METHODS = ("ga", "random_labels", "adversarial", "ga_gd", "ga_gd_ood", "ga_kl", "ga_kl_ood", "memflex")
FORGET_ONLY = {"ga", "random_labels", "adversarial"}  # the others mix as many retain examples in
PRIVACY_STEPS = {"forget_only": 50, "mixed": 100, "vanilla": 170}


@dataclass(frozen=True)
class Task:
    name: str
    seconds: float
    after: str | None  # the vanilla task it waits for


def unit_costs(directory: Path) -> tuple[float, dict[str, float]]:
    """Median wall seconds of the vanilla units and of each method's units."""
    vanilla: list[float] = []
    methods: dict[str, list[float]] = {}
    for path in sorted(directory.glob("*.json")):
        record = load_record(path)
        if record is None or not record.finished or not record.wall_seconds:
            continue
        if record.method_name == "vanilla":
            seconds = record.wall_seconds
            if record.vanilla is not None and record.vanilla.reused:  # loaded from the cache: add its training
                training = record.vanilla.training or {}
                seconds += (training.get("steps") or 0) * (training.get("sec_per_step") or 0.0)
            vanilla.append(seconds)
        elif record.method_name is not None:
            methods.setdefault(record.method_name, []).append(record.wall_seconds)
    if not vanilla or not methods:
        raise SystemExit(f"error: {directory} holds no finished vanilla and method records")
    return statistics.median(vanilla), {name: statistics.median(values) for name, values in methods.items()}


def table5_costs(path: Path, eval_seconds: float) -> tuple[float, dict[str, float]]:
    """Vanilla and per-method unit seconds from table5.py's markdown rows (see the module doc)."""
    per_step: dict[str, float] = {}
    for line in path.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) > 2 and cells[0] not in ("Method", "") and not cells[0].startswith("-"):
            try:
                per_step[cells[0]] = float(cells[1])
            except ValueError:
                continue
    if "ga" not in per_step:
        raise SystemExit(f"error: {path} holds no table5.py table with a ga row")
    methods = {
        name: seconds * PRIVACY_STEPS["forget_only" if name in FORGET_ONLY else "mixed"] + eval_seconds
        for name, seconds in per_step.items()
    }
    return 4 * per_step["ga"] * PRIVACY_STEPS["vanilla"] + eval_seconds, methods


def grid(vanilla: float, methods: dict[str, float], domains: int, models: int, seeds: int) -> list[Task]:
    fallback = statistics.median(methods.values())
    tasks = []
    for domain in range(domains):
        for model in range(models):
            root = f"vanilla/{domain}/{model}"
            tasks.append(Task(root, vanilla, None))
            for method in PAPER_METHODS:
                for seed in range(seeds):
                    tasks.append(Task(f"{method}@{seed}/{domain}/{model}", methods.get(method, fallback), root))
    return tasks


def makespan(tasks: list[Task], workers: int) -> float:
    """Greedy list schedule: a free worker takes the costliest ready task."""
    finish: dict[str, float] = {}
    waiting = {task.name: task for task in tasks}
    ready: list[tuple[float, str]] = [(-t.seconds, t.name) for t in tasks if t.after is None]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []  # (end time, task)
    now, free = 0.0, workers
    while ready or running:
        while free and ready:
            _, name = heapq.heappop(ready)
            heapq.heappush(running, (now + waiting[name].seconds, name))
            free -= 1
        now, name = heapq.heappop(running)
        free += 1
        finish[name] = now
        for task in tasks:
            if task.after == name:
                heapq.heappush(ready, (-task.seconds, task.name))
    return max(finish.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="?", help="a results directory with vanilla and method records")
    parser.add_argument("--table5", type=Path, help="table5.py's printed output, instead of a results directory")
    parser.add_argument("--eval-seconds", type=float, default=0.0, help="with --table5: evaluation seconds per unit")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--domains", type=int, default=2)
    parser.add_argument("--models", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    if (args.results is None) == (args.table5 is None):
        parser.error("give a results directory or --table5 FILE")
    source = args.results or args.table5
    vanilla, methods = unit_costs(args.results) if args.results else table5_costs(args.table5, args.eval_seconds)
    tasks = grid(vanilla, methods, args.domains, args.models, args.seeds)
    serial = sum(task.seconds for task in tasks)
    missing = [m for m in PAPER_METHODS if m not in methods]
    print(
        f"# unit costs from {source}: vanilla {vanilla:.1f} s; "
        + ", ".join(f"{m} {s:.1f} s" for m, s in sorted(methods.items()))
    )
    if missing:
        print(f"# not in the records (median cost used): {', '.join(missing)}")
    print(
        f"# grid: {args.domains} domains x {args.models} models x {len(PAPER_METHODS)} methods x {args.seeds} seeds "
        f"= {len(tasks)} units ({args.domains * args.models} vanilla)"
    )
    print("| workers | makespan (h) | speed-up | scaling efficiency |")
    print("|---:|---:|---:|---:|")
    for workers in args.workers:
        span = makespan(tasks, workers)
        speedup = serial / span
        print(f"| {workers} | {span / 3600:.2f} | {speedup:.1f}x | {speedup / workers:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
