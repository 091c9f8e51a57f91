"""The attacks of ``eval.attacks`` on one model (after unlearning, or a vanilla or oracle
model): each applied to a copy of it, on random streams of its own, and the copy
measured again (scope metrics, prompt prefixes, membership inference). The model itself
and its plain metrics stay as they were."""

from __future__ import annotations

import copy
import random
import traceback
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from knowundo_bench.core.progress import ProgressBoard
from knowundo_bench.evaluate.curves import curve_point
from knowundo_bench.evaluate.report import Evaluator
from knowundo_bench.evaluate.scopes import NamedGuard
from knowundo_bench.records.files import json_safe
from knowundo_bench.records.schema import AttackMetrics, Metrics
from knowundo_bench.run.identity import derived_seed
from knowundo_bench.run.resolution import ResolvedAttack
from knowundo_bench.train.attacking import AttackContext, AttackOutcome


def attack_seed(run_seed: int, label: str) -> int:
    """An attack's seed: from the run seed and the attack's label only, so that every
    method of a run seed is attacked alike (the same relearned subset)."""
    return derived_seed(run_seed, f"attack:{label}")


def complete(metrics: Metrics | None, keys: Mapping[str, str]) -> bool:
    """Whether ``metrics`` holds every attack of ``keys`` (label → key), finished with that key."""
    found = {} if metrics is None else metrics.attacks
    return all(label in found and found[label].key == key for label, key in keys.items())


@dataclass(frozen=True)
class ModelUnderAttack:
    """One unit's model and what its attacks need: its label, run seed, each attack's
    key, the guard in front of it (if any) and the attack sections an earlier run left."""

    label: str
    model: torch.nn.Module
    run_seed: int
    keys: Mapping[str, str]
    vanilla_lr: float
    guard: NamedGuard | None = None
    earlier: Mapping[str, AttackMetrics] | None = None


@dataclass(frozen=True)
class Attacker:
    """Runs a spec's attacks with one evaluator (one vanilla model's encoders)."""

    attacks: tuple[ResolvedAttack, ...]
    evaluator: Evaluator
    board: ProgressBoard
    mixed_precision: str = "no"

    def run(self, target: ModelUnderAttack) -> dict[str, AttackMetrics]:
        """Each attack's section, in spec order: the earlier run's where its key is the
        same (a failed one too: ``--force`` retries it), else computed now."""
        earlier = target.earlier or {}
        sections = {}
        for attack in self.attacks:
            previous = earlier.get(attack.label)
            if previous is not None and previous.key is not None and previous.key == target.keys.get(attack.label):
                sections[attack.label] = previous
            else:
                sections[attack.label] = self.attack(attack, target)
        return sections

    def attack(self, attack: ResolvedAttack, target: ModelUnderAttack) -> AttackMetrics:
        """One attack on a copy of the model, then the copy measured; a failing attack
        is recorded in its section (``error``, with its key: a rerun keeps it, ``--force``
        retries it), not as the unit's failure."""
        evaluator, label = self.evaluator, f"{target.label}@{attack.label}"
        benchmark = evaluator.benchmark
        section = {
            "name": attack.plugin.info.name,
            "params": attack.plugin.params.model_dump(mode="json"),
            "key": target.keys.get(attack.label),
        }
        context = AttackContext(
            encoder=evaluator.encoder,
            forget=benchmark.forget,
            retain=benchmark.retain,
            seed=attack_seed(target.run_seed, attack.label),
            vanilla_lr=target.vanilla_lr,
            label=label,
            mixed_precision=self.mixed_precision,
            board=self.board,
            measure=lambda model, step: curve_point(step, evaluator.scope_only(model)).model_dump(),
        )
        python_state = random.getstate()
        try:
            with torch.random.fork_rng(devices=_cuda_devices(target.model)):
                copied = copy.deepcopy(target.model)
                outcome = attack.plugin.info.apply(attack.plugin.params, copied, context)
                if not isinstance(outcome, AttackOutcome):
                    raise RuntimeError(f"attack {attack.plugin.info.name!r}: apply returned no AttackOutcome")
                attacked = outcome.model if outcome.model is not None else copied
                metrics = evaluator.metrics(label, attacked, target.guard, attacked=True, retaught=outcome.seen)
        except Exception as error:  # the unit's own results stay; the attack says what went wrong
            self.board.log(f"attack {label} failed: {type(error).__name__}: {error}", style="red")
            return AttackMetrics.model_validate(
                {**section, "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
            )
        finally:
            random.setstate(python_state)
        return AttackMetrics.model_validate(
            {
                **metrics.model_dump(exclude={"attacks"}),
                **section,
                "details": json_safe(outcome.details),
            }
        )


def _cuda_devices(model: torch.nn.Module) -> list[int]:
    """The CUDA device whose random state an attack on ``model`` may use (none on CPU)."""
    device = next(model.parameters()).device
    return [device.index or 0] if device.type == "cuda" else []
