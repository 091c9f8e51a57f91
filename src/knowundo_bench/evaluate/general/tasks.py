"""General-task evaluation through lm-evaluation-harness (paper section 2.3.2: MMLU,
ARC-Challenge, TruthfulQA, SIQA, RACE), on the in-memory model.

Two ways to get the tasks:
* by default lm-eval's built-in tasks, whose data comes from the Hugging Face hub;
* with ``eval.general_data_dir``, the offline twins beside this module (same prompts,
  checked against the built-ins by tests), reading JSON Lines in the hub schemas from
  that directory. Their ``data_files`` are made absolute here, since lm-eval resolves
  relative ones from the working directory, not the YAML's folder.

Scores are accuracies in percent (``acc``; MC2 probability mass for TruthfulQA); MMLU
is the size-weighted mean of its subjects, as lm-eval's ``mmlu`` group reports it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
from pathlib import Path
from typing import Any
from unittest import mock

from knowundo_bench.config.evaluation import GeneralSpec
from knowundo_bench.core.errors import InputError
from knowundo_bench.modeling.devices import train_mode

OFFLINE_TASKS_DIR = Path(__file__).parent  # the offline twins' YAML configs and helpers, beside this module


def _offline_config(name: str, data_dir: Path) -> dict[str, Any]:
    """The offline twin's config with absolute data paths; files that are absent are
    dropped (a missing test/validation file is an error, a missing few-shot file is not)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(OFFLINE_TASKS_DIR / f"{name}.yaml")
    files = config["dataset_kwargs"]["data_files"]
    present = {split: str((data_dir / file).resolve()) for split, file in files.items() if (data_dir / file).is_file()}
    evaluated = config.get("test_split") or config.get("validation_split")
    if evaluated not in present:
        raise InputError(f"task {name} needs {files[evaluated]} here (hub schema, JSON Lines)", source=str(data_dir))
    if config.get("fewshot_split") not in present:
        config.pop("fewshot_split", None)
        config.pop("fewshot_config", None)
    config["dataset_kwargs"] = {"data_files": present}
    return config


def _mmlu_subjects(path: str) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return sorted({json.loads(line)["subject"] for line in handle if line.strip()})


def _subject_filter(subject: str):
    def process_docs(dataset):
        return dataset.filter(lambda doc: doc["subject"] == subject)

    return process_docs


def offline_task_configs(tasks: list[str], data_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Per requested task, the lm-eval config dicts that compute it (MMLU: one per subject)."""
    if not data_dir.is_dir():
        raise InputError("not a directory", source=str(data_dir))
    configs: dict[str, list[dict[str, Any]]] = {}
    for name in tasks:
        config = _offline_config(name, data_dir)
        if name != "mmlu":
            configs[name] = [config]
            continue
        configs[name] = []
        for subject in _mmlu_subjects(config["dataset_kwargs"]["data_files"]["test"]):
            subject_config = copy.deepcopy(config)
            subject_config.update(
                task=f"knowundo_mmlu_{subject}",
                description=f"The following are multiple choice questions (with answers) about "
                f"{subject.replace('_', ' ')}.\n\n",
                process_docs=_subject_filter(subject),
            )
            configs[name].append(subject_config)
    return configs


def _score(results: dict[str, Any], task: str) -> tuple[float, int]:
    metrics = results["results"][task]
    value = metrics.get("acc,none")
    return 100.0 * float(value), int(results.get("n-samples", {}).get(task, {}).get("effective", 0))


def _requested(spec: GeneralSpec, data_dir: Path | None):
    """(configs per task, what to hand simple_evaluate, the task manager)."""
    from lm_eval.tasks import TaskManager

    if data_dir is None:
        return {name: [{"task": name}] for name in spec.tasks}, list(spec.tasks), TaskManager()
    configs = offline_task_configs(list(spec.tasks), data_dir)
    return configs, [c for group in configs.values() for c in group], TaskManager(include_defaults=False)


def evaluate_general(model, tokenizer, spec: GeneralSpec, data_dir: Path | None, seed: int) -> dict[str, float]:
    """Run the tasks on ``model`` and return {task: score in percent}. Leaves the model in
    the train/eval mode it had (lm-eval's HFLM switches it to eval)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # per-request truncation notices
    configs, requested, manager = _requested(spec, data_dir)
    # lm-eval's own tqdm bars go to a buffer (ours show progress), and it would run git to
    # record the working directory's commit, printing "fatal: not a git repository"
    # outside one; the harness records package versions itself.
    with (
        contextlib.redirect_stderr(io.StringIO()),
        train_mode(model, False),
        mock.patch("lm_eval.evaluator.get_git_commit_hash", return_value=None),
    ):
        results = lm_eval.simple_evaluate(
            model=HFLM(pretrained=model, tokenizer=tokenizer, batch_size=spec.batch_size),
            tasks=requested,
            num_fewshot=spec.num_fewshot,
            limit=spec.limit,
            task_manager=manager,
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
            bootstrap_iters=0,
            log_samples=False,
        )
    scores: dict[str, float] = {}
    for name, group in configs.items():
        parts = [_score(results, config["task"]) for config in group]
        total = sum(n for _, n in parts)
        scores[name] = sum(s * n for s, n in parts) / total if total else sum(s for s, _ in parts) / len(parts)
    return scores


def general_average(scores: dict[str, float]) -> float | None:
    return sum(scores.values()) / len(scores) if scores else None
