"""General tasks through lm-evaluation-harness: the offline twins render exactly what
the built-in tasks render, RACE on made-up passages, scores on an in-memory model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lm_eval
import pytest
from lm_eval.tasks import TaskManager
from lm_eval.tasks._yaml_loader import load_yaml

from conftest import SHARED_DATA
from helpers import tiny_llama
from knowundo_bench.config.evaluation import GeneralSpec
from knowundo_bench.core.errors import InputError
from knowundo_bench.evaluate.general.tasks import evaluate_general, offline_task_configs
from knowundo_bench.plugins.models.tiny import train_tokenizer

GENERAL_DIR = SHARED_DATA / "general"
BUILTIN = Path(lm_eval.__file__).parent / "tasks"
BUILTIN_YAML = {
    "arc_challenge": BUILTIN / "arc" / "arc_challenge.yaml",
    "social_iqa": BUILTIN / "siqa" / "siqa.yaml",
    "truthfulqa_mc2": BUILTIN / "truthfulqa" / "truthfulqa_mc2.yaml",
    "race": BUILTIN / "race" / "race.yaml",
}

# Made-up passages in the EleutherAI/race schema (RACE itself may not be redistributed):
# one row per article, `problems` a Python-literal string; a cloze question ends "  _  .".
RACE_ROWS = [
    {
        "example_id": "made-up-1",
        "article": "Mia keeps bees on the roof of her flat. Every spring she counts the "
        "hives, and every autumn she sells honey to her neighbours.",
        "problems": str(
            [
                {
                    "question": "Where does Mia keep her bees?",
                    "options": ["In a garden", "On the roof", "At school", "In a shop"],
                    "answer": "B",
                },
                {
                    "question": "Mia sells honey in  _  .",
                    "options": ["spring", "summer", "autumn", "winter"],
                    "answer": "C",
                },
                {
                    "question": "What does Mia do every spring?",
                    "options": ["Counts the hives", "Sells honey", "Moves house", "Buys bees"],
                    "answer": "A",
                },
            ]
        ),
    },
    {
        "example_id": "made-up-2",
        "article": "The river town built a new bridge of stone after the old wooden one was washed away by a flood.",
        "problems": str(
            [
                {
                    "question": "Why was a new bridge built?",
                    "options": [
                        "The old one burned",
                        "A flood washed the old one away",
                        "The town grew",
                        "A king ordered it",
                    ],
                    "answer": "B",
                },
            ]
        ),
    },
]


def write_race(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "race_test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in RACE_ROWS))
    return directory


@pytest.fixture
def general_dir() -> Path:
    if not GENERAL_DIR.is_dir():
        pytest.fail(f"shared general-task samples missing at {GENERAL_DIR}")
    return GENERAL_DIR


def build(config: dict):
    [task] = TaskManager(include_defaults=False).load([config])["tasks"].values()
    return task


def builtin_on_local_file(path: Path, data_files: dict[str, str], name: str) -> object:
    """The built-in task, unchanged but for where its rows come from."""
    config = load_yaml(path)
    config.update(
        task=f"builtin_{name}", dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": data_files}
    )
    for split in ("training_split", "validation_split", "test_split", "fewshot_split"):
        if config.get(split) is not None and config[split] not in data_files:
            config[split] = None
    return build(config)


def assert_same_rendering(ours, builtin, docs: list[dict]) -> None:
    assert docs
    assert ours.config.output_type == builtin.config.output_type == "multiple_choice"
    assert ours.config.target_delimiter == builtin.config.target_delimiter
    assert ours.config.fewshot_delimiter == builtin.config.fewshot_delimiter
    for doc in docs:
        assert ours.fewshot_context(doc, num_fewshot=0) == builtin.fewshot_context(doc, num_fewshot=0)
        assert ours.doc_to_choice(doc) == builtin.doc_to_choice(doc)
        assert ours.doc_to_target(doc) == builtin.doc_to_target(doc)


@pytest.mark.parametrize("name", ["arc_challenge", "social_iqa", "truthfulqa_mc2"])
def test_offline_twin_renders_like_the_builtin_task(name, general_dir):
    [config] = offline_task_configs([name], general_dir)[name]
    ours = build(config)
    builtin = builtin_on_local_file(BUILTIN_YAML[name], config["dataset_kwargs"]["data_files"], name)
    docs = list(ours.test_docs() if ours.has_test_docs() else ours.validation_docs())
    assert len(docs) == 100
    assert_same_rendering(ours, builtin, docs)


def test_truthfulqa_mc2_scores_like_the_builtin(general_dir):
    [config] = offline_task_configs(["truthfulqa_mc2"], general_dir)["truthfulqa_mc2"]
    ours = build(config)
    builtin = builtin_on_local_file(BUILTIN_YAML["truthfulqa_mc2"], config["dataset_kwargs"]["data_files"], "tqa")
    doc = next(iter(ours.validation_docs()))
    results = [(-1.0 - 0.5 * i, False) for i in range(len(doc["mc2_targets"]["choices"]))]
    assert ours.process_results(doc, results)["acc"] == pytest.approx(builtin.process_results(doc, results)["acc"])


def test_mmlu_twin_has_one_task_per_subject_rendering_like_the_builtin_subject_tasks(general_dir, tmp_path):
    configs = offline_task_configs(["mmlu"], general_dir)["mmlu"]
    subjects = [c["task"].removeprefix("knowundo_mmlu_") for c in configs]
    assert subjects == ["abstract_algebra", "anatomy", "high_school_geography", "world_religions"]
    for config, subject in zip(configs, subjects, strict=True):
        ours = build(config)
        local = {}
        for split, source in config["dataset_kwargs"]["data_files"].items():
            rows = [line for line in Path(source).read_text().splitlines() if json.loads(line)["subject"] == subject]
            local[split] = str(tmp_path / f"{subject}_{split}.jsonl")
            Path(local[split]).write_text("\n".join(rows) + "\n")
        builtin = builtin_on_local_file(BUILTIN / "mmlu" / "default" / f"mmlu_{subject}.yaml", local, subject)
        docs = list(ours.test_docs())
        assert len(docs) == 25 and all(doc["subject"] == subject for doc in docs)
        assert_same_rendering(ours, builtin, docs)
        assert [d["question"] for d in ours.fewshot_docs()] == [d["question"] for d in builtin.fewshot_docs()]
        for doc in docs[:3]:  # few-shot prompts too (dev split, first_n sampler)
            assert ours.fewshot_context(doc, num_fewshot=2) == builtin.fewshot_context(doc, num_fewshot=2)


def test_race_twin_renders_made_up_passages_like_the_builtin(tmp_path):
    directory = write_race(tmp_path / "general")
    [config] = offline_task_configs(["race"], directory)["race"]
    ours = build(config)
    builtin = builtin_on_local_file(BUILTIN_YAML["race"], config["dataset_kwargs"]["data_files"], "race")
    docs = list(ours.test_docs())
    assert_same_rendering(ours, builtin, docs)
    context = ours.fewshot_context(docs[0], num_fewshot=0)
    assert context.startswith("Article: Mia keeps bees")
    assert "Question: Where does Mia keep her bees?\nAnswer: On the roof\n" in context
    assert "\nMia sells honey in autumn\n" in context  # a cloze question is shown with its blank filled
    assert context.endswith("What does Mia do every spring?")
    assert ours.doc_to_target(docs[0]) == 0 and ours.doc_to_target(docs[1]) == 1


def test_missing_task_file_is_one_clear_error(tmp_path):
    with pytest.raises(InputError, match=r"task race needs race_test.jsonl here"):
        offline_task_configs(["race"], tmp_path)
    with pytest.raises(InputError, match="not a directory"):
        offline_task_configs(["race"], tmp_path / "absent")


def test_scores_on_an_in_memory_model_and_train_mode_restored(tmp_path, general_dir):
    directory = write_race(tmp_path / "general")
    for file in ("arc_challenge_test.jsonl", "mmlu_test.jsonl", "mmlu_dev.jsonl"):
        (directory / file).write_text((general_dir / file).read_text())
    tokenizer = train_tokenizer(["Question: Answer: Article: the a of"] * 5, 300)
    model = tiny_llama(len(tokenizer), hidden_size=16, tokenizer=tokenizer, max_position_embeddings=512)
    model.train()
    spec = GeneralSpec(tasks=["race", "arc_challenge", "mmlu"], limit=4, batch_size=4)
    scores = evaluate_general(model, tokenizer, spec, directory, seed=0)
    assert model.training  # lm-eval's HFLM switched it to eval; the harness switched it back
    assert set(scores) == {"race", "arc_challenge", "mmlu"}
    assert all(0 <= s <= 100 and math.isfinite(s) for s in scores.values())
    assert scores["race"] in (0.0, 50.0, 100.0)  # two made-up articles
    assert scores == evaluate_general(model, tokenizer, spec, directory, seed=0)  # deterministic
