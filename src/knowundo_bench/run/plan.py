"""The plan of a run: its units, each with its own record. Vanilla units first (one, or
one per seed with ``vanilla.per_seed``), then each method once per seed in spec order."""

from __future__ import annotations

from dataclasses import dataclass

from knowundo_bench.run.resolution import ResolvedMethod, ResolvedSpec


@dataclass(frozen=True)
class Unit:
    """One unit of work with its own record: a vanilla model, or one method at one seed."""

    label: str  # the record's file name: "vanilla", "<label>", or "<label>@<seed>" with `seeds`
    order: int  # leaderboard position of its row (vanilla 0, methods in spec order)
    run_seed: int  # the seed this unit runs with (its method seed derives from it and the label)
    vanilla_seed: int  # the seed of the vanilla model it starts from
    method: ResolvedMethod | None = None  # None: the vanilla model itself


def plan_units(resolved: ResolvedSpec) -> list[Unit]:
    """Vanilla units first (one, or one per seed with ``vanilla.per_seed``), then each
    method once per seed in spec order."""
    spec = resolved.spec
    all_seeds = sorted({s for m in resolved.methods for s in (m.seeds or (spec.seed,))} | set(spec.seeds or ()))
    per_seed = spec.vanilla.per_seed and bool(all_seeds)
    units = (
        [Unit(f"vanilla@{s}", 0, s, s) for s in all_seeds] if per_seed else [Unit("vanilla", 0, spec.seed, spec.seed)]
    )
    for order, method in enumerate(resolved.methods, start=1):
        if method.seeds is None:
            units.append(Unit(method.label, order, spec.seed, spec.seed, method))
            continue
        for seed in method.seeds:
            units.append(Unit(f"{method.label}@{seed}", order, seed, seed if per_seed else spec.seed, method))
    return units


def vanilla_units(units: list[Unit]) -> list[Unit]:
    return [unit for unit in units if unit.method is None]


def started_from(units: list[Unit], vanilla: Unit) -> list[Unit]:
    """The method units that start from ``vanilla``'s model, in spec order."""
    return [unit for unit in units if unit.method is not None and unit.vanilla_seed == vanilla.run_seed]
