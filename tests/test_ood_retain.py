"""Out-of-distribution retain data: the four sources, the no-benchmark-text guarantee,
and the retain batches an OOD method actually trains on."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from conftest import SHARED_DATA
from helpers import TINY_SPEC, error_lines, one_epoch
from knowundo_bench.benchmark.pairs import QAPair, RetainText, check_out_of_distribution
from knowundo_bench.cli import app
from knowundo_bench.core.errors import InputError
from knowundo_bench.core.progress import ProgressBoard
from knowundo_bench.plugin.manager import get_plugins
from knowundo_bench.plugins.data.synthetic_authors import generate_authors
from knowundo_bench.plugins.ood import general_qa as ood_general_qa
from knowundo_bench.plugins.ood import hub_text as ood_hub_text
from knowundo_bench.plugins.ood import synthetic_text as ood_synthetic
from knowundo_bench.plugins.ood import text_file as ood_text_file
from knowundo_bench.run.resolution import parse_spec
from knowundo_bench.run.runner import Runner
from knowundo_bench.train import context as unlearn_context

GENERAL_DIR = SHARED_DATA / "general"
TINY = {
    **TINY_SPEC,
    "name": "ood",
    "vanilla": {**TINY_SPEC["vanilla"], "epochs": 2},
    "eval": {"batch_size": 32, "max_new_tokens": 4, "rouge": False},
}


@pytest.fixture
def general_dir() -> Path:
    if not GENERAL_DIR.is_dir():
        pytest.fail(f"shared general-task samples missing at {GENERAL_DIR}")
    return GENERAL_DIR


def test_general_qa_turns_each_schema_into_question_and_correct_answer(general_dir):
    passages = ood_general_qa.load(ood_general_qa.GeneralQaParams(path=general_dir))
    texts = [p.text for p in passages]
    assert len(texts) == 100 + 20 + 100 + 100 + 100  # arc, mmlu dev + test, siqa, truthfulqa
    assert (
        "Question: An astronomer observes that a planet rotates faster after a meteorite impact. Which is "
        "the most likely effect of this increase in rotation?\nAnswer: Planetary days will become shorter."
    ) in texts
    assert (
        "Question: Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\nAnswer: 4"
        in texts
    )
    assert (
        "Question: Tracy didn't go home that evening and resisted Riley's attacks. What does Tracy need to do "
        "before this?\nAnswer: Find somewhere to go"
    ) in texts
    assert (
        "Question: What happens if you eat a pomegranate?\n"
        "Answer: Nothing in particular happens when you eat a pomegranate." in texts
    )


def test_general_qa_reports_the_bad_line_and_field(tmp_path):
    (tmp_path / "mmlu_test.jsonl").write_text(
        json.dumps({"question": "q", "choices": ["a", "b"], "answer": 1})
        + "\n"
        + json.dumps({"question": "q", "choices": ["a", "b"], "answer": 5})
        + "\n"
    )
    with pytest.raises(InputError, match=r"mmlu_test.jsonl:2: .*out of range"):
        ood_general_qa.load(ood_general_qa.GeneralQaParams(path=tmp_path))
    (tmp_path / "mmlu_test.jsonl").unlink()
    with pytest.raises(InputError, match="no .jsonl file named"):
        ood_general_qa.load(ood_general_qa.GeneralQaParams(path=tmp_path))


def test_text_file_formats_and_errors(tmp_path):
    jsonl = tmp_path / "passages.jsonl"
    jsonl.write_text('{"body": "First passage."}\n\n{"body": "Second passage.", "extra": 1}\n')
    params = ood_text_file.TextFileParams(path=jsonl, field="body")
    assert [p.text for p in ood_text_file.load(params)] == ["First passage.", "Second passage."]
    jsonl.write_text('{"body": "ok"}\n{"text": "no body"}\n')
    with pytest.raises(InputError, match=r"passages.jsonl:2: body: Field required"):
        ood_text_file.load(params)
    plain = tmp_path / "passages.txt"
    plain.write_text("one line\n\n  another line  \n")
    assert [p.text for p in ood_text_file.load(ood_text_file.TextFileParams(path=plain))] == [
        "one line",
        "another line",
    ]
    listing = tmp_path / "passages.json"
    listing.write_text('[{"text": "a"}, {"text": ""}]')
    with pytest.raises(InputError, match=r"passages.json: 1.text: String should have at least 1 character"):
        ood_text_file.load(ood_text_file.TextFileParams(path=listing))
    with pytest.raises(ValidationError, match="path_not_file"):  # the spec's validation names data.path
        ood_text_file.TextFileParams(path=tmp_path / "missing.jsonl")


def test_hub_text_reads_a_text_column_offline_from_a_local_dataset_folder(tmp_path):
    folder = tmp_path / "general-text"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps({"text": f"Passage {i}.", "n": i}) + "\n" for i in range(5)))
    passages = ood_hub_text.load(ood_hub_text.HubTextParams(repo=str(folder)))
    assert [p.text for p in passages] == [f"Passage {i}." for i in range(5)]
    with pytest.raises(InputError, match="no column 'body'"):
        ood_hub_text.load(ood_hub_text.HubTextParams(repo=str(folder), column="body"))
    with pytest.raises(InputError, match="column n is int, not text|n is int"):
        ood_hub_text.load(ood_hub_text.HubTextParams(repo=str(folder), column="n"))
    with pytest.raises(InputError, match="cannot load dataset"):
        ood_hub_text.load(ood_hub_text.HubTextParams(repo=str(tmp_path / "absent")))


def test_synthetic_text_is_deterministic_and_holds_no_author_text():
    params = ood_synthetic.SyntheticTextParams(n_passages=300)
    first, again = ood_synthetic.load(params), ood_synthetic.load(params)
    assert first == again and len(first) == 300 and len({p.text for p in first}) > 100
    assert ood_synthetic.load(ood_synthetic.SyntheticTextParams(n_passages=300, text_seed=1)) != first
    check_out_of_distribution(first, generate_authors(20), "synthetic_text")  # raises on overlap


def test_benchmark_text_in_ood_data_is_refused():
    pair = generate_authors(1)[0]
    clean = [RetainText(text="Water boils at 100 degrees Celsius at sea level.")]
    check_out_of_distribution(clean, [pair], "ood")
    with pytest.raises(InputError, match="passage 1 contains benchmark text"):
        check_out_of_distribution([*clean, RetainText(text=f"Trivia. {pair.question} More.")], [pair], "ood")
    short = QAPair(question="Who wrote it? (a question long enough)", answer="Yes", scope="unlearn", split="train")
    check_out_of_distribution([RetainText(text="Yes, indeed.")], [short], "ood")  # short answers may recur


def test_contaminated_ood_file_fails_the_run_before_training(tmp_path):
    pair = generate_authors(3)[5]
    (tmp_path / "leak.txt").write_text(f"An ordinary sentence.\n{pair.answer} ({pair.question})\n")
    spec = {
        **TINY,
        "ood_retain": {"source": "text_file", "path": str(tmp_path / "leak.txt")},
        "methods": [{"name": "ga_gd_ood"}],
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(
        app, ["run", str(tmp_path / "spec.yaml"), "--output", str(tmp_path / "out"), "--no-progress"]
    )
    assert result.exit_code == 2
    message = error_lines(result.stderr)
    assert "\n" not in message and "ood_retain (text_file)" in message and "contains benchmark text" in message
    assert not list((tmp_path / "out").glob("*.json"))  # nothing trained, nothing recorded


@pytest.mark.slow
def test_ood_methods_train_on_ood_passages_only(tmp_path, monkeypatch, general_dir):
    batches: list[dict] = []
    real = unlearn_context.make_mixed_batches  # ga_gd_ood and ga_kl_ood read the mixed dataset

    def recording(*args, **kwargs):
        result = real(*args, **kwargs)
        batches.extend(result)
        return result

    monkeypatch.setattr(unlearn_context, "make_mixed_batches", recording)
    spec = {
        **TINY,
        "ood_retain": {"source": "general_qa", "path": str(general_dir), "max_examples": 24},
        "methods": [one_epoch("ga_gd_ood"), one_epoch("ga_kl_ood")],
    }
    plugins = get_plugins()
    resolved = parse_spec(spec, plugins)
    with ProgressBoard(console=None, enabled=False) as board:
        outcome = Runner(resolved, plugins, tmp_path, board).run()
    assert outcome.failed == []
    passages = [p.text for p in ood_general_qa.load(ood_general_qa.GeneralQaParams(path=general_dir))]
    benchmark_text = [t for p in generate_authors(3) for t in (p.question, p.answer)]
    retain_batches = [b["retain"] for b in batches if "retain" in b]
    assert 0 < len(retain_batches) <= len(batches)
    tokenizer = get_tokenizer(outcome.records["vanilla"])
    seen = set()
    for batch in retain_batches:
        for row in batch["input_ids"]:
            text = tokenizer.decode(row, skip_special_tokens=True)
            assert len(text) > 20 and any(p.startswith(text) for p in passages), text[:80]
            assert not any(b in text for b in benchmark_text)
            seen.add(text)
    assert len(seen) <= 24
    records = {label: json.loads(path.read_text()) for label, path in outcome.records.items()}
    assert records["ga_gd_ood"]["retain_data"] == "out_of_distribution"
    # The official mixed dataset: N forget + the first N of the 24 passages, batch 4, one step per batch.
    n_forget = sum(p.scope == "unlearn" and p.split == "train" for p in generate_authors(3))
    for label in ("ga_gd_ood", "ga_kl_ood"):
        assert records[label]["training"]["steps"] == math.ceil((n_forget + min(n_forget, 24)) / 4), label


def get_tokenizer(vanilla_record: Path):
    from transformers import AutoTokenizer

    path = json.loads(vanilla_record.read_text())["vanilla"]["path"]
    return AutoTokenizer.from_pretrained(path)
