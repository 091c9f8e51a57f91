"""What a unit's numbers came from: its seeds, the spec's hash, the unit key a rerun
reuses a record by, the plugins that did the work, and the record that says all of it."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from knowundo_bench import __version__
from knowundo_bench.plugin.manager import Plugins
from knowundo_bench.records.files import package_versions
from knowundo_bench.records.schema import ResultRecord, RunIdentity
from knowundo_bench.run.plan import Unit
from knowundo_bench.run.resolution import ResolvedMethod, ResolvedSpec

ATTACK_FORMAT = 2  # 2: membership inference after an attack leaves out the pairs it retaught


def derived_seed(run_seed: int, label: str) -> int:
    """A method's seed: a stable hash of the run seed and the method's label, so that adding,
    removing or reordering methods leaves every other method's numbers unchanged."""
    digest = hashlib.sha256(f"{run_seed}:{label}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def method_seed(resolved: ResolvedSpec, method: ResolvedMethod, run_seed: int | None = None) -> int:
    """Derived from the run seed and the method's label (:func:`derived_seed`); an
    ablation control shares its localised method's seed (same batches, same initial state)."""
    seed = resolved.spec.seed if run_seed is None else run_seed
    return derived_seed(seed, method.seed_label or method.ablation_of or method.label)


def spec_hash(resolved: ResolvedSpec) -> str:
    """The resolved spec's content, without where it writes, where and on how many
    threads it runs and which trackers it logs to."""
    echo = resolved.spec.model_dump(mode="json", exclude={"output_dir", "cache_dir", "threads", "execution", "logging"})
    return hashlib.sha256(json.dumps(echo, sort_keys=True).encode()).hexdigest()[:16]


def model_label(resolved: ResolvedSpec) -> str:
    """The model source, with the model's name or file where the source has one."""
    params = resolved.model_params.model_dump(mode="json")
    name = next((params[key] for key in ("name_or_path", "file", "path") if params.get(key)), None)
    return resolved.spec.model.source if name is None else f"{resolved.spec.model.source}:{name}"


@lru_cache(maxsize=1)
def harness_commit() -> str | None:
    """The git commit of the harness checkout this runs from ("+dirty" with local changes),
    or None when installed from a wheel."""
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit


@dataclass(frozen=True)
class Provenance:
    """A run's identity, known once its data is loaded (``data_hash``): it names each
    unit's inputs, keys its record for reuse and writes the record's common fields."""

    resolved: ResolvedSpec
    plugins: Plugins
    data_hash: str
    spec_hash: str
    versions: dict[str, str] = field(default_factory=package_versions)

    @classmethod
    def of(cls, resolved: ResolvedSpec, plugins: Plugins, data_hash: str) -> Provenance:
        return cls(resolved, plugins, data_hash, spec_hash(resolved))

    def origin(self, plugin: object) -> str:
        origin = self.plugins.origin(plugin)
        return f"knowundo-bench {__version__}" if origin == "built-in" else origin

    def identity(self, unit: Unit) -> RunIdentity:
        spec, method = self.resolved.spec, unit.method
        return RunIdentity(
            spec_name=spec.name,
            spec_hash=self.spec_hash,
            data_source=spec.data.source,
            data_hash=self.data_hash,
            model=model_label(self.resolved),
            seed=unit.run_seed,
            harness_version=__version__,
            method_plugin=None if method is None else self.origin(method.plugin),
            localizer_plugin=None
            if method is None or method.localizer is None
            else self.origin(method.localizer.plugin),
            git_commit=harness_commit(),
        )

    def unit_key(self, vanilla_key: str, unit: Unit) -> str:
        """What a finished unit's result depends on (inputs, seeds, the harness's and the
        providing plugins' versions); a rerun reuses a record with the same key."""
        spec = self.resolved.spec
        identity: dict[str, Any] = {
            "vanilla": vanilla_key,
            "eval": spec.eval.unit_identity(),
            "knowundo_bench": __version__,
        }
        method = unit.method
        if method is not None:
            identity.update(
                method=method.info.name,
                label=method.label,
                seed=method_seed(self.resolved, method, unit.run_seed),
                params=method.params.model_dump(mode="json"),
                retain=method.info.retain,
                efficiency=spec.efficiency.model_dump(mode="json"),
                localizer=None
                if method.localizer is None
                else [method.localizer.info.name, method.localizer.params.model_dump(mode="json")],
                ood=spec.ood_retain.model_dump(mode="json") if method.info.retain == "out_of_distribution" else None,
                plugins=[
                    self.origin(method.plugin),
                    None if method.localizer is None else self.origin(method.localizer.plugin),
                ],
            )
            if method.guard is not None:  # only then, so that unguarded units keep their keys
                identity["guard"] = [
                    method.guard.info.name,
                    method.guard.params.model_dump(mode="json"),
                    self.origin(method.guard.plugin),
                ]
        return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]

    def attack_keys(self, unit_key: str) -> dict[str, str]:
        """Each attack's key on the unit of ``unit_key``: what its section depends on
        beyond the unit (the attack, its parameters and plugin, membership inference's
        settings). Attacks are not in the unit's key: adding one reuses the unit."""
        spec = self.resolved.spec
        keys = {}
        for attack in self.resolved.attacks:
            identity = {
                "unit": unit_key,
                "attack": [attack.plugin.info.name, attack.plugin.params.model_dump(mode="json")],
                "plugin": self.origin(attack.plugin.plugin),
                "mia": spec.eval.mia.model_dump(mode="json", exclude={"batch_size"}),
                "format": ATTACK_FORMAT,
            }
            keys[attack.label] = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
        return keys

    def stamp(self, unit: Unit, record: ResultRecord, **fields: Any) -> ResultRecord:
        """``record`` as ``unit``'s, with ``fields`` and who, what and when ran it."""
        return ResultRecord.model_validate(
            {
                **dict(record),
                "run": self.resolved.spec.name,
                "method": unit.row if unit.method is None else unit.method.label,
                "unit": unit.label,
                "order": unit.order,
                "seed": unit.run_seed,
                "identity": self.identity(unit),
                "spec": self.resolved.echo(),
                "versions": self.versions,
                "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "overrides": list(self.resolved.overrides),
                **fields,
            }
        )
