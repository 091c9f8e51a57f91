"""Turn result records into leaderboard rows: vanilla first, then methods in spec order,
one row per method aggregated over its seeds (``per_seed``: one per unit), with 95%
intervals and a mark for the methods not significantly below the best
(:mod:`knowundo_bench.leaderboard.stats`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy

from knowundo_bench.core.errors import InputError
from knowundo_bench.leaderboard.stats import (
    PairScores,
    geometric_interval,
    paired_difference,
    t_interval,
    unpaired_difference,
)
from knowundo_bench.records.index import indexed_records
from knowundo_bench.records.memory import memory_kind
from knowundo_bench.records.schema import Metrics, ResultRecord, TrainingSummary

ROW_KEYS = (
    "method",
    "unlearn_success",
    "unlearn_ppl",
    "unlearn_rouge_l",
    "retention_success",
    "retention_ppl",
    "retention_rouge_l",
    "avg_success",
    "unlearn_refusal_rate",  # behind a guard: percent of requests refused (null without one)
    "retention_refusal_rate",
    "mia_auc_loss",  # membership inference, forget vs holdout (null without data.holdout_instances)
    "mia_auc_zlib",
    "mia_auc_mink",
    "mia_auc_minkpp",
    "privleak",  # Min-K% AUC relative to the retrain oracle's, percent (null without an oracle)
    "sec_per_step",
    "peak_mem_gb",
    "status",
    "memory_kind",  # what peak_mem_gb measures: CUDA allocator peak, or CPU peak-RSS growth
    "collapsed",  # degenerate greedy answers (evaluate/collapse.py); aggregated: any seed, with collapsed_seeds
    "degenerate_share",
)


# General tasks (lm-evaluation-harness), in the paper's column order; null where not run.
GENERAL_KEYS = ("mmlu", "arc_challenge", "truthfulqa_mc2", "social_iqa", "race", "general_avg")


def prefix_keys(name: str) -> tuple[str, str]:
    """Row keys of the scope successes under prompt prefix or attack ``name``."""
    return f"unlearn_success@{name}", f"retention_success@{name}"


MIA_KEYS = ("mia_auc_loss", "mia_auc_zlib", "mia_auc_mink", "mia_auc_minkpp")
RECOVERY = "recovery@"  # plain Unlearn Success minus the attacked (or prefixed) one


def attacked_keys(name: str) -> dict[str, str]:
    """Row keys of what is read again under prompt prefix or attack ``name``."""
    unlearn, retention = prefix_keys(name)
    return {"unlearn": unlearn, "retention": retention, "recovery": f"{RECOVERY}{name}", "privleak": f"privleak@{name}"}


def load_records(directory: Path) -> list[ResultRecord]:
    if not directory.is_dir():
        raise InputError("results directory not found", source=str(directory))
    records = indexed_records(directory)
    if not records:
        raise InputError("no knowundo-bench result records in this directory", source=str(directory))
    return sorted(records, key=lambda r: (r.order, r.method))


IDENTITY_KEYS = ("run", "model", "data", "seeds", "n_seeds", "target_met", "avg_success_not_below_best")
# averaged over seeds with a t-interval; perplexities geometrically
INTERVAL_KEYS = (
    "unlearn_success",
    "unlearn_rouge_l",
    "retention_success",
    "retention_rouge_l",
    "avg_success",
    *MIA_KEYS,
    "privleak",
)
GEOMETRIC_KEYS = ("unlearn_ppl", "retention_ppl")
FINISHED = ("ok", "nonfinite")


PLAIN = ""  # an oracle's plain Min-K% AUC in :func:`oracle_aucs`; the others are by attack label


def record_row(record: ResultRecord, oracle: dict[str, float] | None = None) -> dict[str, Any]:
    """One unit's row: the paper's columns, general tasks, prompt prefixes, membership
    inference (``privleak`` against ``oracle``, the retrain oracle's Min-K% AUCs: plain,
    and after each attack, which an attacked row is compared with), each attack's
    readings, identity."""
    oracle = oracle or {}
    metrics = record.metrics or Metrics()
    training = record.training or TrainingSummary()
    row: dict[str, Any] = {
        "method": record.method,
        "unlearn_success": metrics.unlearn.success,
        "unlearn_ppl": metrics.unlearn.ppl,
        "unlearn_rouge_l": metrics.unlearn.rouge_l,
        "retention_success": metrics.retention.success,
        "retention_ppl": metrics.retention.ppl,
        "retention_rouge_l": metrics.retention.rouge_l,
        "avg_success": metrics.avg_success,
        "unlearn_refusal_rate": metrics.unlearn.refusal_rate,  # behind a guard only
        "retention_refusal_rate": metrics.retention.refusal_rate,
        "sec_per_step": training.sec_per_step,
        "peak_mem_gb": training.peak_mem_gb,
        "status": record.status,
        "memory_kind": memory_kind(training.memory_kind, training.device),
        "collapsed": None if metrics.collapse is None else metrics.collapse.collapsed,
        "degenerate_share": None if metrics.collapse is None else metrics.collapse.degenerate_share,
    }
    general = metrics.general or {}
    row.update({key: general.get(key) for key in GENERAL_KEYS})
    mia = metrics.mia
    row.update({key: None if mia is None else getattr(mia, key.removeprefix("mia_")) for key in MIA_KEYS})
    row["privleak"] = privleak(row["mia_auc_mink"], oracle.get(PLAIN))
    for name, prefixed in metrics.prompt_prefixes.items():
        keys = attacked_keys(name)
        row[keys["unlearn"]] = prefixed.unlearn.success
        row[keys["retention"]] = prefixed.retention.success
        row[keys["recovery"]] = recovery(metrics.unlearn.success, prefixed.unlearn.success)
    for name, attacked in metrics.attacks.items():
        keys = attacked_keys(name)
        row[keys["unlearn"]] = attacked.unlearn.success
        row[keys["retention"]] = attacked.retention.success
        row[keys["recovery"]] = recovery(metrics.unlearn.success, attacked.unlearn.success)
        reference = oracle.get(name, oracle.get(PLAIN))  # the oracle under the same attack
        row[keys["privleak"]] = privleak(None if attacked.mia is None else attacked.mia.auc_mink, reference)
    identity = record.identity
    row.update(
        run=record.run,
        unit=record.unit or record.method,
        seed=record.seed,
        model=identity.model if identity else None,
        data=f"{identity.data_source}:{identity.data_hash}" if identity else None,
        target_met=record.vanilla.target_met if record.vanilla and record.method_name == "vanilla" else None,
    )
    return row


def privleak(auc_value: float | None, oracle_auc: float | None) -> float | None:
    """MUSE's privleak (Shi et al., 2024), percent, of the Min-K% attack
    (:mod:`knowundo_bench.evaluate.mia`), as open-unlearning computes it: MUSE reports the
    AUC as 1 − AUC, so privleak = ((1 − AUC) − (1 − AUC_oracle)) / (1 − AUC_oracle) × 100:
    0 is the oracle's privacy, negative leaks membership (under-unlearning: MUSE's target
    model scores about −100), positive is over-unlearning. None without either AUC, or
    when the oracle's members are perfectly told apart (nothing to divide by)."""
    if auc_value is None or oracle_auc is None or math.isnan(auc_value) or math.isnan(oracle_auc):
        return None
    reference = 1.0 - oracle_auc
    return None if reference <= 0 else ((1.0 - auc_value) - reference) / reference * 100.0


def recovery(plain: float | None, attacked: float | None) -> float | None:
    """How much Unlearn Success an attack took back (points; negative: it forgot more)."""
    return None if plain is None or attacked is None else plain - attacked


def oracle_aucs(records: list[ResultRecord]) -> dict[int | None, dict[str, float]]:
    """The retrain oracle's Min-K% AUCs by seed (one oracle, or one per seed with
    ``vanilla.per_seed``): plain (:data:`PLAIN`) and after each attack. A run has one
    oracle entry (``retrain``); a second one's would replace the first's."""
    found: dict[int | None, dict[str, float]] = {}
    for record in records:
        metrics = record.metrics
        if not (record.oracle and record.finished and metrics):
            continue
        aucs = {PLAIN: None if metrics.mia is None else metrics.mia.auc_mink}
        aucs.update({label: None if a.mia is None else a.mia.auc_mink for label, a in metrics.attacks.items()})
        found[record.seed] = {label: value for label, value in aucs.items() if value is not None}
    return found


def oracle_auc_for(record: ResultRecord, oracles: dict[int | None, dict[str, float]]) -> dict[str, float]:
    """The oracle ``record`` is measured against: the one of its seed, else the only one."""
    if record.seed in oracles:
        return oracles[record.seed]
    return next(iter(oracles.values())) if len(oracles) == 1 else {}


def pair_scores(records: list[ResultRecord]) -> PairScores | None:
    """The per-pair accuracies of a method's finished seeds (None if a record lacks them)."""
    unlearn, retention = {}, {}
    for record in records:
        raw = (record.metrics.raw if record.metrics else None) or {}
        try:
            unlearn[record.seed or 0] = numpy.asarray(raw["unlearn"]["example_accuracy"], dtype=float)
            retention[record.seed or 0] = numpy.asarray(raw["retention"]["example_accuracy"], dtype=float)
        except (KeyError, TypeError):
            return None
    return PairScores(unlearn, retention) if unlearn else None


# Where each kind of number lives: an interval is held within these ends (a t-interval
# over three seeds of 98.4 reaches 104); ``ci95_unclipped`` keeps the raw ends.
PERCENT_BASES = (
    "unlearn_success",
    "retention_success",
    "avg_success",
    "unlearn_rouge_l",
    "retention_rouge_l",
    "unlearn_refusal_rate",
    "retention_refusal_rate",
    "degenerate_share",
    *GENERAL_KEYS,
)


def value_bounds(key: str) -> tuple[float, float] | None:
    """The ends a row key's values cannot leave: percentages [0, 100], AUCs [0, 1],
    recoveries (a difference of two percentages) [-100, 100]; None for the unbounded
    (perplexity, privleak)."""
    if key.startswith(RECOVERY):
        return -100.0, 100.0
    if key.split("@", 1)[0] in PERCENT_BASES:
        return 0.0, 100.0
    if key in MIA_KEYS:
        return 0.0, 1.0
    return None


def within_bounds(key: str, interval: tuple[float, float]) -> list[float]:
    """``interval`` clipped to where ``key``'s values live (:func:`value_bounds`)."""
    bounds = value_bounds(key)
    if bounds is None:
        return list(interval)
    return [min(max(end, bounds[0]), bounds[1]) for end in interval]


def aggregate(group: list[ResultRecord], oracles: dict[int | None, dict[str, float]] | None = None) -> dict[str, Any]:
    """One row for a method's units: means and 95% intervals over its finished seeds
    (no peak memory where seeds measured it differently: CPU RSS growth and CUDA peak)."""
    rows = [record_row(record, oracle_auc_for(record, oracles or {})) for record in group]
    finished = [row for row in rows if row["status"] in FINISHED]
    first = rows[0]
    row: dict[str, Any] = {"method": first["method"]}
    skip = ("method", "status", "run", "unit", "seed", "model", "data", "target_met", "memory_kind", "collapsed")
    numeric = [key for key in dict.fromkeys(key for r in rows for key in r) if key not in skip]
    unclipped: dict[str, list[float]] = {}
    for key in numeric:
        values = [r[key] for r in finished if r.get(key) is not None]
        if not values:
            row[key] = None
            continue
        if key in GEOMETRIC_KEYS:
            row[key], interval = geometric_interval(values)
        else:
            row[key], interval = t_interval(values)
        if key in INTERVAL_KEYS or key in GEOMETRIC_KEYS or "@" in key or key in GENERAL_KEYS:
            bounded = None if interval is None else within_bounds(key, interval)
            if interval is not None and bounded != list(interval) and not any(map(math.isnan, interval)):
                unclipped[key] = list(interval)
            row[f"{key}_ci95"] = bounded
    row["ci95_unclipped"] = unclipped or None
    flags = [r["collapsed"] for r in finished if r.get("collapsed") is not None]
    row["collapsed"] = None if not flags else any(flags)
    row["collapsed_seeds"] = None if not flags else sum(flags)
    kinds = {r["memory_kind"] for r in finished if r.get("peak_mem_gb") is not None}
    row["memory_kind"] = next(iter(kinds)) if len(kinds) == 1 else None
    if len(kinds) > 1:
        row["peak_mem_gb"] = None
    statuses = [r["status"] for r in rows]
    bad = {s: statuses.count(s) for s in dict.fromkeys(statuses) if s != "ok"}
    if len(rows) == 1:
        row["status"] = rows[0]["status"]
    else:
        row["status"] = "ok" if not bad else ", ".join(f"{s} {n}/{len(rows)}" for s, n in bad.items())
    targets = [r["target_met"] for r in rows if r["target_met"] is not None]
    row.update(
        run=first["run"],
        model=first["model"],
        data=first["data"],
        seeds=[r["seed"] for r in rows],
        n_seeds=len(finished),
        target_met=None if not targets else all(targets),
    )
    return row


def mark_best(rows: list[dict[str, Any]], groups: list[list[ResultRecord]]) -> None:
    """Set ``avg_success_not_below_best`` on each method row of one run: True for the
    best Avg Success and for rows whose paired difference from it is not significant."""
    methods = [
        (row, group)
        for row, group in zip(rows, groups, strict=True)
        if group[0].method_name != "vanilla" and not group[0].oracle
    ]  # vanilla models (one per vanilla setting) and oracles are references, not candidates
    scored = [
        (row, group)
        for row, group in methods
        if row.get("avg_success") is not None and math.isfinite(row["avg_success"])
    ]
    if not scored:
        return
    best_row, best_group = max(scored, key=lambda item: item[0]["avg_success"])
    best_scores = pair_scores([r for r in best_group if r.status in FINISHED])
    for row, group in scored:
        if row is best_row:
            row["avg_success_not_below_best"] = best_scores is not None or None
            continue
        scores = pair_scores([r for r in group if r.status in FINISHED])
        difference = None if best_scores is None or scores is None else paired_difference(best_scores, scores)
        row["avg_success_vs_best"] = None if difference is None else [difference[0], *difference[1]]
        row["avg_success_not_below_best"] = None if difference is None else difference[1][0] <= 0


def oracle_gaps(rows: list[dict[str, Any]], groups: list[list[ResultRecord]]) -> None:
    """Set ``oracle_gap`` on each row of a run with a retrain oracle: the mean absolute
    difference from the oracle's Unlearn and Retention Success, in points (0: the
    successes of a model never trained on the forget set). Avg Success cannot say this:
    vanilla's 0 and 100 average to the same 50 as a model that forgot everything."""
    oracle = next((row for row, group in zip(rows, groups, strict=True) if group[0].oracle), None)
    if oracle is None:
        return
    for row in rows:
        values = [(row.get(key), oracle.get(key)) for key in ("unlearn_success", "retention_success")]
        known = all(a is not None and b is not None for a, b in values)
        row["oracle_gap"] = sum(abs(a - b) for a, b in values) / 2 if known else None  # type: ignore[operator]


def method_groups(records: list[ResultRecord]) -> list[list[ResultRecord]]:
    """Records grouped by (run, method), in leaderboard order."""
    groups: dict[tuple[str | None, str], list[ResultRecord]] = {}
    for record in records:
        groups.setdefault((record.run, record.method), []).append(record)
    return list(groups.values())


def leaderboard_rows(directories: Path | Sequence[Path], per_seed: bool = False) -> list[dict[str, Any]]:
    """One row per method and run, aggregated over seeds (``per_seed``: one per unit);
    every row carries the keys any row has (null where absent)."""
    folders = [directories] if isinstance(directories, Path) else list(directories)
    by_folder = []
    for directory in folders:
        records = load_records(directory)
        oracles = oracle_aucs(records)
        if per_seed:
            by_folder.append([record_row(record, oracle_auc_for(record, oracles)) for record in records])
            continue
        groups = method_groups(records)
        run_rows = [aggregate(group, oracles) for group in groups]
        mark_best(run_rows, groups)
        oracle_gaps(run_rows, groups)
        by_folder.append(run_rows)
    names = [{row["run"] for row in folder_rows} for folder_rows in by_folder]
    if len(folders) > 1 and any(a & b for i, a in enumerate(names) for b in names[i + 1 :]):
        for directory, folder_rows in zip(folders, by_folder, strict=True):  # one spec, several folders
            for row in folder_rows:
                row["run"] = str(directory)
    rows = [row for folder_rows in by_folder for row in folder_rows]
    keys = row_keys(rows)
    return [{key: row.get(key) for key in keys} for row in rows]


def row_keys(rows: list[dict[str, Any]]) -> list[str]:
    keys = list(ROW_KEYS) + list(GENERAL_KEYS)
    for row in rows:
        keys += [key for key in row if key not in keys]
    return keys


def method_differences(first: Path, second: Path) -> list[dict[str, Any]]:
    """Per method in both runs: ``second`` minus ``first`` in Avg Success, with a 95%
    interval from :func:`stats.unpaired_difference` (the runs' seeds are separate trainings)."""
    runs = [{group[0].method: group for group in method_groups(load_records(d))} for d in (first, second)]
    differences = []
    for method in [m for m in runs[0] if m in runs[1] and runs[0][m][0].method_name != "vanilla"]:
        a, b = (pair_scores([r for r in run[method] if r.status in FINISHED]) for run in runs)
        result = None if a is None or b is None else unpaired_difference(b, a)
        differences.append(
            {
                "method": method,
                "first": str(first),
                "second": str(second),
                "avg_success_difference": None if result is None else result[0],
                "avg_success_difference_ci95": None if result is None else list(result[1]),
            }
        )
    return differences


def robustness_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The robustness view: per row, the plain successes, and per prompt prefix and attack
    its successes and recovery (plain minus attacked Unlearn Success), then membership
    inference; each with its interval where the row has one."""
    names = list(dict.fromkeys(key.removeprefix(RECOVERY) for row in rows for key in row if key.startswith(RECOVERY)))
    names = [name for name in names if not name.endswith("_ci95")]
    keys = ["method", "unlearn_success", "retention_success"]
    for name in names:
        attacked = attacked_keys(name)
        keys += [attacked["unlearn"], attacked["recovery"], attacked["retention"]]
        if any(row.get(attacked["privleak"]) is not None for row in rows):  # attacks with MIA, not prefixes
            keys.append(attacked["privleak"])
    keys += [*MIA_KEYS, "privleak"]
    shown = []
    for row in rows:
        kept = {}
        for key in keys:
            kept[key] = row.get(key)
            if f"{key}_ci95" in row:
                kept[f"{key}_ci95"] = row[f"{key}_ci95"]
        kept.update({key: row.get(key) for key in ("run", "unit", "status", "n_seeds") if key in row})
        shown.append(kept)
    return shown
