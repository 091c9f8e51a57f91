"""The plan of a run: its units, each with its own record. Vanilla units first (one per
vanilla setting, or one per setting and seed with ``vanilla.per_seed``), and the oracles
(``retrain``: fine-tuned models of their own, by the same seed rules), then each method
once per seed in spec order."""

from __future__ import annotations

import json
from dataclasses import dataclass

from knowundo_bench.config.spec import VanillaSpec
from knowundo_bench.core.errors import InputError
from knowundo_bench.run.resolution import ResolvedMethod, ResolvedSpec

VANILLA = "vanilla"


@dataclass(frozen=True)
class Unit:
    """One unit of work with its own record: a vanilla model, or one method at one seed."""

    label: str  # the record's file name: "vanilla", "<label>", or "<label>@<seed>" with `seeds`
    order: int  # leaderboard position of its row (vanilla 0, methods in spec order)
    run_seed: int  # the seed this unit runs with (its method seed derives from it and the label)
    vanilla_seed: int  # the seed of the vanilla model it starts from
    vanilla: VanillaSpec  # that model's settings (the spec's `vanilla` or the method's own)
    method: ResolvedMethod | None = None  # None: the vanilla model itself
    start: str = VANILLA  # the label of the vanilla unit it starts from (its own, for a vanilla unit)

    @property
    def fine_tuned(self) -> bool:
        """Whether the unit fine-tunes a model of its own (a vanilla model, or an oracle
        such as ``retrain``) rather than unlearning one."""
        return self.method is None or self.method.info.oracle

    @property
    def row(self) -> str:
        """A vanilla unit's leaderboard row: ``vanilla``, or ``vanilla-<method>`` for a
        method's own vanilla settings."""
        return self.start.partition("@")[0]


def vanilla_rows(resolved: ResolvedSpec) -> dict[str, tuple[str, VanillaSpec]]:
    """Each method label's vanilla row and settings: ``vanilla`` for the spec's
    settings; a method whose own ``vanilla`` changes them starts from ``vanilla-<label>``,
    shared with every later method of the same settings."""
    spec = resolved.spec
    by_settings = {json.dumps(spec.vanilla.identity(), sort_keys=True): VANILLA}
    labels = {method.label for method in resolved.methods}
    rows = {}
    for method in resolved.methods:
        if method.info.oracle:
            continue
        settings = method.vanilla or spec.vanilla
        key = json.dumps(settings.identity(), sort_keys=True)
        if key not in by_settings:
            row = f"{VANILLA}-{method.ablation_of or method.label}"
            if row in labels:
                raise InputError(f"method label {row!r} names {method.label}'s own vanilla model; rename the method")
            by_settings[key] = row
        rows[method.label] = (by_settings[key], settings)
    return rows


def plan_units(resolved: ResolvedSpec) -> list[Unit]:
    """Vanilla units first (per vanilla setting: one, or one per seed with
    ``vanilla.per_seed``), then each method once per seed in spec order."""
    spec = resolved.spec
    all_seeds = sorted({s for m in resolved.methods for s in (m.seeds or (spec.seed,))} | set(spec.seeds or ()))
    per_seed = spec.vanilla.per_seed and bool(all_seeds)
    rows = vanilla_rows(resolved)
    methods: list[Unit] = []
    oracles: list[Unit] = []
    for order, method in enumerate(resolved.methods, start=1):
        if method.info.oracle:  # fine-tuned anew, once per vanilla seed
            assert method.vanilla is not None
            for seed in all_seeds if per_seed else [spec.seed]:
                label = f"{method.label}@{seed}" if per_seed else method.label
                oracles.append(Unit(label, order, seed, seed, method.vanilla, method, start=label))
            continue
        row, settings = rows[method.label]
        if method.seeds is None:
            start = f"{row}@{spec.seed}" if per_seed else row
            methods.append(Unit(method.label, order, spec.seed, spec.seed, settings, method, start))
            continue
        for seed in method.seeds:
            start = f"{row}@{seed}" if per_seed else row
            methods.append(
                Unit(f"{method.label}@{seed}", order, seed, seed if per_seed else spec.seed, settings, method, start)
            )
    # the spec's vanilla model always (it is the table's reference row); a method's own only where used
    starts = [f"{VANILLA}@{s}" for s in all_seeds] if per_seed else [VANILLA]
    starts += sorted({unit.start for unit in methods} - set(starts), key=[u.start for u in methods].index)
    by_start = {unit.start: unit for unit in methods}
    vanillas = []
    for start in starts:
        first = by_start.get(start)
        seed = int(start.partition("@")[2]) if per_seed else spec.seed
        vanillas.append(Unit(start, 0, seed, seed, first.vanilla if first else spec.vanilla, start=start))
    return vanillas + oracles + methods


def vanilla_units(units: list[Unit]) -> list[Unit]:
    """The units that fine-tune a model of their own: vanilla models and oracles."""
    return [unit for unit in units if unit.fine_tuned]


def started_from(units: list[Unit], vanilla: Unit) -> list[Unit]:
    """The method units that start from ``vanilla``'s model, in spec order."""
    return [unit for unit in units if not unit.fine_tuned and unit.start == vanilla.label]
