"""Tests of the data model (benchmark/pairs.py, benchmark/files.py) and the ``local`` data-source plugin,
on the real KnowUnDo privacy files and on hand-made bad files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from conftest import PRIVACY_DIR
from knowundo_bench.benchmark.files import infer_instances, read_local_domain
from knowundo_bench.benchmark.pairs import Benchmark, QAPair, first_instances
from knowundo_bench.core.errors import InputError
from knowundo_bench.plugins.data import local
from knowundo_bench.plugins.data.local import LocalParams

SIZES = {
    ("unlearn", "train"): 400,
    ("unlearn", "val"): 110,
    ("retention", "train"): 441,
    ("retention", "val"): 108,
}
# The real data lives next to the repository: <repo>/../shared/data/knowundo/privacy.


@pytest.fixture(scope="module")
def real_pairs() -> list[QAPair]:
    if not PRIVACY_DIR.is_dir():
        pytest.fail(f"shared KnowUnDo data not found at {PRIVACY_DIR}")
    return read_local_domain(PRIVACY_DIR)


@pytest.fixture(scope="module")
def real_instances(real_pairs: list[QAPair]) -> list[QAPair]:
    return infer_instances(real_pairs)


def _write_domain(directory: Path, records: dict[str, object] | None = None) -> Path:
    """Write a small valid domain; ``records`` overrides the content of named files."""
    directory.mkdir(parents=True, exist_ok=True)
    for scope, split in SIZES:
        name = f"{scope}_{split}.json"
        content = [{"text": f"Who is Ann Lee ({scope} {split})?", "labels": "A writer."}]
        (directory / name).write_text(json.dumps(content), encoding="utf-8")
    for name, content in (records or {}).items():
        (directory / name).write_text(json.dumps(content), encoding="utf-8")
    return directory


def _input_error(directory: Path) -> InputError:
    with pytest.raises(InputError) as info:
        read_local_domain(directory)
    message = str(info.value)
    assert "\n" not in message, message
    return info.value


# --------------------------------------------------------------------------- real data


def test_real_data_sizes_scopes_and_splits(real_pairs: list[QAPair]) -> None:
    counts = Counter((p.scope, p.split) for p in real_pairs)
    assert counts == SIZES
    assert len(real_pairs) == 1059
    # Files are read in the order unlearn_train, unlearn_val, retention_train, retention_val.
    order = [(p.scope, p.split) for p in real_pairs]
    assert order == sorted(order, key=list(SIZES).index)
    assert all(p.instance is None for p in real_pairs)


def test_real_data_pairs_match_the_files(privacy_dir: Path, real_pairs: list[QAPair]) -> None:
    expected = []
    for scope, split in SIZES:
        records = json.loads((privacy_dir / f"{scope}_{split}.json").read_text(encoding="utf-8"))
        expected += [(r["text"], r["labels"], scope, split) for r in records]
    assert [(p.question, p.answer, p.scope, p.split) for p in real_pairs] == expected


def test_benchmark_groups_real_data(real_instances: list[QAPair]) -> None:
    bench = Benchmark(tuple(real_instances))
    bench.check_complete("privacy")
    assert len(bench.forget) == 400
    assert len(bench.unlearn_val) == 110
    assert len(bench.retain) == 441
    assert len(bench.retention_val) == 108
    assert all(p.scope == "unlearn" and p.split == "train" for p in bench.forget)
    assert all(p.scope == "retention" and p.split == "val" for p in bench.retention_val)


def test_infer_instances_names_the_author(real_instances: list[QAPair]) -> None:
    [pair] = [p for p in real_instances if p.question == "Who are Isabella Marquez's parents?"]
    assert pair.instance == "Isabella Marquez"


def test_infer_instances_covers_every_pair(real_pairs: list[QAPair], real_instances: list[QAPair]) -> None:
    assert len(real_instances) == len(real_pairs)
    assert all(p.instance for p in real_instances)
    # Only the instance is filled in; everything else is kept, in order.
    assert [p.model_copy(update={"instance": None}) for p in real_instances] == real_pairs
    instances = Benchmark(tuple(real_instances)).instances
    assert 50 <= len(instances) <= 60, instances


def test_infer_instances_keeps_given_instances() -> None:
    pairs = [
        QAPair(question="Who are Ann Lee's parents?", answer="x", scope="unlearn", split="train", instance="A"),
        QAPair(question="Who are Ann Lee's parents?", answer="x", scope="unlearn", split="train"),
        QAPair(question="Where was Ann Lee born?", answer="x", scope="retention", split="train"),
        QAPair(question="What does she write?", answer="x", scope="retention", split="val"),
    ]
    result = infer_instances(pairs)
    assert [p.instance for p in result] == ["A", "Ann Lee", "Ann Lee", "Ann Lee"]


def test_infer_instances_ignores_street_names(real_instances: list[QAPair]) -> None:
    [pair] = [
        p for p in real_instances if p.question == "What is the significance of 221B Baker St in literary history?"
    ]
    assert pair.instance == "Emma Clarke"


def test_first_instances_keeps_first_three(real_instances: list[QAPair]) -> None:
    order = Benchmark(tuple(real_instances)).instances
    kept = first_instances(real_instances, 3)
    assert Benchmark(tuple(kept)).instances == order[:3]
    assert order[0] == "Isabella Marquez"
    # Every pair of those three instances is kept, in the original order.
    assert kept == [p for p in real_instances if p.instance in set(order[:3])]
    assert len(kept) < len(real_instances)


def test_first_instances_more_than_available(real_instances: list[QAPair]) -> None:
    assert first_instances(real_instances, 10_000) == real_instances
    assert first_instances(real_instances, 0) == []


def test_local_plugin_loads_real_data(privacy_dir: Path, real_instances: list[QAPair]) -> None:
    assert local.load(LocalParams(path=privacy_dir), "privacy") == real_instances
    [info] = local.register_data_sources()
    assert info.name == "local"
    assert info.params is LocalParams
    assert info.load is local.load


# --------------------------------------------------------------------------- bad files


def test_valid_small_domain(tmp_path: Path) -> None:
    pairs = read_local_domain(_write_domain(tmp_path / "d"))
    assert [(p.scope, p.split) for p in pairs] == list(SIZES)


def test_missing_file(tmp_path: Path) -> None:
    directory = _write_domain(tmp_path / "d")
    (directory / "retention_val.json").unlink()
    error = _input_error(directory)
    assert "retention_val.json" in str(error)
    assert error.source == str(directory / "retention_val.json")


def test_record_missing_labels(tmp_path: Path) -> None:
    bad = [{"text": "Who is Ann Lee?", "labels": "A writer."}, {"text": "Who is Bo Chen?"}]
    directory = _write_domain(tmp_path / "d", {"unlearn_val.json": bad})
    message = str(_input_error(directory))
    assert "unlearn_val.json" in message
    assert "labels" in message
    assert "1.labels" in message  # names the record index too


def test_labels_of_wrong_type(tmp_path: Path) -> None:
    bad = [{"text": "How old is Ann Lee?", "labels": 42}]
    directory = _write_domain(tmp_path / "d", {"retention_train.json": bad})
    message = str(_input_error(directory))
    assert "retention_train.json" in message
    assert "labels" in message


def test_empty_text(tmp_path: Path) -> None:
    directory = _write_domain(tmp_path / "d", {"unlearn_train.json": [{"text": "", "labels": "x"}]})
    message = str(_input_error(directory))
    assert "unlearn_train.json" in message
    assert "text" in message


def test_top_level_object_instead_of_list(tmp_path: Path) -> None:
    bad = {"text": "Who is Ann Lee?", "labels": "A writer."}
    directory = _write_domain(tmp_path / "d", {"unlearn_train.json": bad})
    message = str(_input_error(directory))
    assert "unlearn_train.json" in message
    assert "array" in message or "list" in message


def test_empty_list(tmp_path: Path) -> None:
    directory = _write_domain(tmp_path / "d", {"retention_val.json": []})
    message = str(_input_error(directory))
    assert "retention_val.json" in message
    assert "empty split" in message


def test_invalid_json(tmp_path: Path) -> None:
    directory = _write_domain(tmp_path / "d")
    (directory / "unlearn_val.json").write_text('[{"text": "a",\n "labels": ', encoding="utf-8")
    message = str(_input_error(directory))
    assert "unlearn_val.json" in message


def test_non_utf8_bytes(tmp_path: Path) -> None:
    directory = _write_domain(tmp_path / "d")
    (directory / "unlearn_val.json").write_bytes(b'[{"text": "caf\xe9?", "labels": "x"}]')
    message = str(_input_error(directory))
    assert "unlearn_val.json" in message
    assert "UTF-8" in message


def test_path_is_not_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "unlearn_train.json"
    path.write_text("[]", encoding="utf-8")
    message = str(_input_error(path))
    assert str(path) in message
    assert "not a directory" in message
    missing = tmp_path / "nowhere"
    assert str(missing) in str(_input_error(missing))


def test_local_plugin_reports_bad_file(tmp_path: Path) -> None:
    directory = _write_domain(tmp_path / "d", {"unlearn_train.json": []})
    with pytest.raises(InputError, match="unlearn_train.json: empty split"):
        local.load(LocalParams(path=directory), "privacy")


# --------------------------------------------------------------------------- Benchmark


def _pair(question: str, answer: str, scope: str, split: str) -> QAPair:
    return QAPair(question=question, answer=answer, scope=scope, split=split, instance="Ann Lee")


def _four_pairs() -> list[QAPair]:
    return [_pair(f"Q {scope} {split}?", "A.", scope, split) for scope, split in SIZES]


@pytest.mark.parametrize("missing", list(SIZES))
def test_check_complete_rejects_empty_split(missing: tuple[str, str]) -> None:
    bench = Benchmark(tuple(p for p in _four_pairs() if (p.scope, p.split) != missing))
    with pytest.raises(InputError) as info:
        bench.check_complete("mydata")
    message = str(info.value)
    assert message.startswith("mydata: empty split")
    assert f"{missing[0]}/{missing[1]}" in message
    assert "\n" not in message


def test_check_complete_accepts_full_benchmark() -> None:
    Benchmark(tuple(_four_pairs())).check_complete("mydata")


def test_fingerprint_changes_with_one_answer() -> None:
    pairs = _four_pairs()
    bench = Benchmark(tuple(pairs))
    assert bench.fingerprint() == Benchmark(tuple(_four_pairs())).fingerprint()
    changed = list(pairs)
    changed[2] = changed[2].model_copy(update={"answer": "B."})
    assert Benchmark(tuple(changed)).fingerprint() != bench.fingerprint()
    assert len(bench.fingerprint()) == 16


def test_fingerprint_of_real_data_changes_with_one_answer(real_instances: list[QAPair]) -> None:
    changed = list(real_instances)
    changed[500] = changed[500].model_copy(update={"answer": changed[500].answer + " "})
    assert Benchmark(tuple(changed)).fingerprint() != Benchmark(tuple(real_instances)).fingerprint()
