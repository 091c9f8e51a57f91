"""The units of a run that still have to run, as an executor plugin receives them
(:class:`~knowundo_bench.plugin.execution.Suite`): run here, per vanilla model, each unit
from the same vanilla weights and each writing its own record; or noted as finished or
failed when an executor ran them elsewhere."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from knowundo_bench.core.progress import ProgressBoard
from knowundo_bench.evaluate.report import Evaluator
from knowundo_bench.evaluate.scopes import with_answer_budget
from knowundo_bench.modeling.devices import ModelSnapshot
from knowundo_bench.plugin.execution import PendingUnit, SuitePayload, UnitResult
from knowundo_bench.records.files import load_record, write_record
from knowundo_bench.records.layout import record_path
from knowundo_bench.records.schema import PromptRecord, ResultRecord
from knowundo_bench.run.attacks import Attacker, ModelUnderAttack, complete
from knowundo_bench.run.identity import Provenance
from knowundo_bench.run.machine import Machine
from knowundo_bench.run.plan import Unit, plan_units, started_from, vanilla_units
from knowundo_bench.run.resolution import ResolvedAttack
from knowundo_bench.run.reuse import ReuseCheck, pending_units, unit_keys
from knowundo_bench.run.unit import Start, Workbench, run_method
from knowundo_bench.run.vanilla import build_encoder, cache_root, prepare_vanilla, vanilla_record
from knowundo_bench.train import distributed


@dataclass
class RunOutcome:
    """What a run did, filled as its units finish (an interrupted run reports it)."""

    output_dir: Path
    records: dict[str, Path] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)  # finished units a previous run left
    vanilla_reused: bool = False
    target_missed: list[str] = field(default_factory=list)  # vanilla units below vanilla.target_accuracy
    listeners: list[Callable[[str, Path], None]] = field(default_factory=list)  # told of each record written

    def wrote(self, label: str, path: Path) -> None:
        """``label``'s record, written (here or by a worker) in this run: the listeners
        (the run's trackers) are told."""
        self.records[label] = path
        for listener in self.listeners:
            listener(label, path)


@dataclass
class UnitSuite:
    """A run's units with their keys and the records an earlier run finished (``done``);
    :attr:`pending` is what is left to run."""

    bench: Workbench
    provenance: Provenance
    units: list[Unit]
    keys: dict[str, str]
    done: dict[str, ResultRecord]
    pending: list[PendingUnit]
    output_dir: Path
    outcome: RunOutcome
    worker: Callable[..., list[UnitResult]]  # what a worker process runs: worker(payload, labels, threads, *after)
    machine: Machine  # the device and model factory units run with here
    partial: dict[str, ResultRecord] = field(default_factory=dict)  # finished, but attacks missing: only those run

    @classmethod
    def assemble(
        cls,
        bench: Workbench,
        output_dir: Path,
        machine: Machine,
        worker: Callable[..., list[UnitResult]],
        *,
        force: bool = False,
        clean: bool = True,
        running: Sequence[str] = (),
    ) -> UnitSuite:
        """The suite of ``bench``'s run in ``output_dir``: its identity, each unit's key,
        the records an earlier run finished (none with ``force``; never those of
        ``running``, the units about to run here) and what is left to run. ``clean``
        tidies what an interrupted run left; never in a worker, whose siblings may write."""
        resolved, benchmark = bench.resolved, bench.inputs.benchmark
        provenance = Provenance.of(resolved, bench.plugins, benchmark.fingerprint())
        units = plan_units(resolved)
        keys = unit_keys(provenance, units, benchmark)
        reusable = ReuseCheck(output_dir, provenance, keys, bench.board, force).reusable_units(units, clean)
        for label, record in reusable.items():
            kept = without_stale_attacks(record, resolved.attacks)
            if kept is not record and clean:  # an attack removed from the spec leaves the table
                write_record(output_dir, label, kept)
            reusable[label] = kept
        attacked = {label: complete(r.metrics, provenance.attack_keys(keys[label])) for label, r in reusable.items()}
        # a worker completes only the units it was given (``running``); the others are its siblings'
        partial = {
            label: record
            for label, record in reusable.items()
            if not attacked[label] and (not running or label in running)
        }
        done = {label: record for label, record in reusable.items() if label not in partial and label not in running}
        if partial and clean:
            bench.board.log(
                f"attacks to add to finished units (unlearning replayed, not re-measured): {', '.join(partial)}"
            )
        pending = pending_units(units, done, output_dir)
        return cls(
            bench, provenance, units, keys, done, pending, output_dir, RunOutcome(output_dir), worker, machine, partial
        )

    @property
    def board(self) -> ProgressBoard:
        """Where executors show progress and log."""
        return self.bench.board

    @property
    def payload(self) -> SuitePayload:
        resolved = self.bench.resolved
        return SuitePayload(
            spec=resolved.echo(),
            source=str(resolved.path or "spec"),
            overrides=resolved.overrides,
            output_dir=str(self.output_dir.absolute()),  # workers may start in another directory
            cache_dir=str(cache_root(resolved).absolute()),
        )

    def write(self, unit: Unit, record: ResultRecord, **fields: object) -> Path:
        """``record`` stamped as ``unit``'s, written by the main process only (the path either way)."""
        if not self.bench.main:
            return record_path(self.output_dir, unit.label)
        return write_record(self.output_dir, unit.label, self.provenance.stamp(unit, record, **fields))

    def run_here(self, labels: Sequence[str]) -> list[UnitResult]:
        """Run these units in this process: per vanilla model (trained or loaded once),
        its units in spec order, each from the same vanilla weights."""
        wanted, results = set(labels), []
        for vanilla_unit in vanilla_units(self.units):
            group = [unit for unit in started_from(self.units, vanilla_unit) if unit.label in wanted]
            if vanilla_unit.label not in wanted and not group:
                continue
            started = time.perf_counter()
            start = self.start(vanilla_unit)
            distributed.barrier()
            if vanilla_unit.label in wanted:
                results.append(UnitResult(vanilla_unit.label, "ok", time.perf_counter() - started))
            model = start.vanilla.bundle.model
            snapshot = ModelSnapshot(model)
            for unit in group:
                results.append(self.run_unit(unit, start))
                snapshot.restore(model)
                distributed.barrier()  # the other processes wait while the main one evaluates
            del start, model, snapshot  # before the next vanilla model or oracle is loaded
        return results

    def start(self, unit: Unit) -> Start:
        """A vanilla model or oracle (cached or trained), its evaluator, and its record
        (or its metrics from a reusable one), with its attacks."""
        bench = self.bench
        resolved, board = bench.resolved, bench.board
        device, factory = self.machine.device, self.machine.factory
        started = time.perf_counter()
        benchmark = bench.inputs.benchmark
        vanilla = prepare_vanilla(resolved, factory, benchmark, device, board, unit.vanilla_seed, unit.vanilla)
        self.outcome.vanilla_reused = vanilla.reused
        board.log(f"vanilla model {'reused from cache' if vanilla.reused else 'trained and cached'}: {vanilla.path}")
        if vanilla.target_met is False:
            board.log(
                f"{unit.label} model missed its target accuracy: {vanilla.accuracy:.2f}% < "
                f"{unit.vanilla.target_accuracy}% "
                "(raise vanilla.epochs or lr; results below start from it)",
                style="yellow",
            )
        encoder = build_encoder(resolved, vanilla.bundle.tokenizer)
        eval_spec = with_answer_budget(resolved.spec.eval, encoder, benchmark)
        if resolved.spec.eval.max_new_tokens is None and eval_spec.rouge:
            board.log(f"ROUGE-L: up to {eval_spec.max_new_tokens} new tokens (the longest val answer + a tenth)")
        evaluator = Evaluator(
            spec=eval_spec,
            benchmark=benchmark,
            encoder=encoder,
            prefixed={
                name: encoder.with_prefix(system_prompt=text) for name, text in eval_spec.prompt_prefixes.items()
            },
            board=board,
            results_dir=self.output_dir,
            seed=resolved.spec.seed,
        )
        attacker = Attacker(resolved.attacks, evaluator, board, resolved.spec.model.mixed_precision)
        reused = self.done.get(unit.label)
        if reused is not None and reused.metrics is not None:
            return Start(vanilla, evaluator, reused.metrics, attacker)
        if not bench.main:
            return Start(vanilla, evaluator, None, attacker)
        earlier = self.partial.get(unit.label)
        target = ModelUnderAttack(
            unit.label,
            vanilla.bundle.model,
            unit.run_seed,
            self.provenance.attack_keys(self.keys[unit.label]),
            unit.vanilla.lr,
            earlier=None if earlier is None or earlier.metrics is None else earlier.metrics.attacks,
        )
        if earlier is not None and earlier.metrics is not None:  # only its attacks were missing
            metrics = earlier.metrics.model_copy(update={"attacks": attacker.run(target)})
            record = earlier.model_copy(update={"metrics": metrics})
            self.outcome.wrote(unit.label, self.write(unit, record, **unit_fields(earlier)))
            return Start(vanilla, evaluator, metrics, attacker)
        metrics = evaluator.metrics(unit.label, vanilla.bundle.model)
        metrics = metrics.model_copy(update={"attacks": attacker.run(target)})
        prompt = PromptRecord(
            format=encoder.prompt_format,
            chat_template=encoder.uses_chat_template,
            max_length=encoder.max_length,
            max_new_tokens=evaluator.spec.max_new_tokens,
        )
        oracle = unit.method is not None and unit.method.info.oracle
        record = ResultRecord(
            method=unit.row,
            method_name="vanilla" if unit.method is None else unit.method.info.name,
            oracle=oracle,
            status="ok",
            metrics=metrics,
            prompt=prompt,
        )
        self.outcome.wrote(
            unit.label,
            self.write(
                unit,
                record,
                unit_key=self.keys[unit.label],
                vanilla=vanilla_record(vanilla, unit.vanilla, unit.start),
                wall_seconds=time.perf_counter() - started,
            ),
        )
        return Start(vanilla, evaluator, metrics, attacker)

    def run_unit(self, unit: Unit, start: Start) -> UnitResult:
        """One method unit from the vanilla weights, its record written whatever happens."""
        assert unit.method is not None
        board = self.bench.board
        started = time.perf_counter()
        earlier = self.partial.get(unit.label)
        attack_keys = self.provenance.attack_keys(self.keys[unit.label])
        try:
            record = run_method(
                self.bench, start, unit.method, unit.run_seed, unit.label, attack_keys=attack_keys, earlier=earlier
            ).record
        except Exception as error:  # one failing method must not lose the others
            if distributed.world_size() > 1:
                raise  # the other processes may be inside a collective: stop them all (rerunning resumes)
            board.log(f"method {unit.label} failed: {type(error).__name__}: {error}", style="red")
            record = ResultRecord(
                method=unit.method.label,
                method_name=unit.method.info.name,
                status="failed",
                error=f"{type(error).__name__}: {error}",
                traceback=traceback.format_exc(),
            )
        if record.status == "nonfinite":
            board.log(f"method {unit.label}: {'; '.join(record.numerical_faults)}", style="yellow")
        seconds = time.perf_counter() - started
        if earlier is not None and record.status == "failed":  # the finished record stays as it was
            board.log(f"{unit.label}: its attacks could not be added; its record is unchanged", style="red")
            self.outcome.records[unit.label] = record_path(self.output_dir, unit.label)
            return UnitResult(unit.label, earlier.status, seconds)
        fields = (
            unit_fields(earlier)
            if earlier is not None
            else {
                "unit_key": self.keys[unit.label],
                "vanilla": vanilla_record(start.vanilla, unit.vanilla, unit.start),
                "wall_seconds": seconds,
            }
        )
        self.outcome.wrote(unit.label, self.write(unit, record, **fields))
        outcome = UnitResult(unit.label, record.status, seconds, record.error)
        if outcome.status == "failed":
            self.outcome.failed.append(unit.label)
        return outcome

    def finished(self, result: UnitResult) -> None:
        """A unit that ran elsewhere: its record is on disk."""
        self.outcome.wrote(result.label, record_path(self.output_dir, result.label))
        if result.status == "failed" and result.label not in self.outcome.failed:
            self.outcome.failed.append(result.label)

    def record_failure(self, label: str, error: str) -> None:
        """A ``failed`` record for a unit whose worker died more often than it may retry
        (unless the unit's finished record made it to disk before its worker died)."""
        unit = next(unit for unit in self.units if unit.label == label)
        written = load_record(record_path(self.output_dir, label))
        if written is not None and written.finished and written.unit_key == self.keys.get(label):
            self.finished(UnitResult(label, written.status, written.wall_seconds or 0.0))
            return
        method, name = (unit.row, "vanilla") if unit.method is None else (unit.method.label, unit.method.info.name)
        oracle = unit.method is not None and unit.method.info.oracle
        failed = ResultRecord(method=method, method_name=name, oracle=oracle, status="failed", error=error)
        self.outcome.wrote(label, self.write(unit, failed, unit_key=self.keys.get(label)))
        if label not in self.outcome.failed:
            self.outcome.failed.append(label)


def unit_fields(earlier: ResultRecord) -> dict[str, object]:
    """What a record keeps from the run that measured it when a later run adds attacks
    (its provenance too: the plain metrics are that run's), and when they were added."""
    return {
        "unit_key": earlier.unit_key,
        "vanilla": earlier.vanilla,
        "wall_seconds": earlier.wall_seconds,
        "identity": earlier.identity,
        "versions": earlier.versions,
        "finished_at": earlier.finished_at,
        "attacks_added_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def without_stale_attacks(record: ResultRecord, attacks: Sequence[ResolvedAttack]) -> ResultRecord:
    """``record`` without the attack sections of attacks the spec no longer has."""
    labels = {attack.label for attack in attacks}
    metrics = record.metrics
    if metrics is None or set(metrics.attacks) <= labels:
        return record
    kept = {label: section for label, section in metrics.attacks.items() if label in labels}
    return record.model_copy(update={"metrics": metrics.model_copy(update={"attacks": kept})})
