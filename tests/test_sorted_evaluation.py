"""Evaluation runs its batches from the shortest example to the longest and puts every
reading back in the order of the val split (issue 28): the same numbers as batches in
split order, to the last digit, for teacher-forced scoring, generation and the MIA
readings."""

from __future__ import annotations

import pytest
import torch

from helpers import authors_model, authors_tokenizer, two_authors
from knowundo_bench.benchmark.encoding import PromptEncoder, batched, length_sorted_batches
from knowundo_bench.evaluate import mia
from knowundo_bench.evaluate.metrics import example_nll_sums, per_example_accuracy
from knowundo_bench.evaluate.scopes import greedy_answers, teacher_forced_examples

PAIRS, _, _ = two_authors()


@pytest.fixture(scope="module")
def setting():
    tokenizer = authors_tokenizer(PAIRS)
    model = authors_model(tokenizer).eval()
    encoder = PromptEncoder(tokenizer, 96)
    return model, encoder, encoder.encode_all(PAIRS, with_eos=False)


@torch.no_grad()
def in_split_order(model, encoder, examples, size):
    """Today's reference: batches in the order of the split."""
    accuracy, sums, counts = [], [], []
    for chunk in batched(examples, size):
        batch = encoder.collate(chunk)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        accuracy.append(per_example_accuracy(logits, batch["labels"]))
        chunk_sums, chunk_counts = example_nll_sums(logits, batch["labels"])
        sums.append(chunk_sums.double())
        counts.append(chunk_counts)
    return torch.cat(accuracy), torch.cat(sums), torch.cat(counts)


def test_batches_run_from_the_shortest_and_cover_every_example_once(setting):
    _, encoder, examples = setting
    seen, widths = [], []
    for indices, batch in length_sorted_batches(encoder, examples, 4, torch.device("cpu")):
        seen += indices
        widths.append(batch["input_ids"].shape[1])
        assert batch["attention_mask"].sum(dim=1).tolist() == [len(examples[i].input_ids) for i in indices]
    assert sorted(seen) == list(range(len(examples))) and seen != list(range(len(examples)))
    assert widths == sorted(widths)
    padded = lambda groups: sum(len(g) * max(len(e.input_ids) for e in g) for g in groups)  # noqa: E731
    sorted_groups = [[examples[i] for i in chunk] for chunk in batched(seen, 4)]
    assert padded(sorted_groups) < padded(batched(examples, 4))


@pytest.mark.parametrize("size", [3, 8])
def test_teacher_forced_readings_are_the_same_to_the_last_digit(setting, size):
    model, encoder, examples = setting
    got = teacher_forced_examples(model, encoder, examples, size)
    accuracy, sums, counts = in_split_order(model, encoder, examples, size)
    assert got.accuracy.tolist() == accuracy.tolist()
    assert got.token_counts.tolist() == counts.tolist()
    torch.testing.assert_close(got.nll_sums, sums, rtol=1e-6, atol=0)  # float32 sums, same per row
    assert got.summary() == pytest.approx(
        teacher_forced_examples(model, encoder, examples, 1).summary(), rel=1e-6, abs=0
    )
    assert [round(v, 4) for v in got.summary()] == [round(v, 4) for v in type(got)(accuracy, sums, counts).summary()]


def test_greedy_answers_come_back_in_split_order(setting):
    model, encoder, examples = setting
    sorted_answers = greedy_answers(model, encoder, examples, 4, 6)
    one_by_one = [greedy_answers(model, encoder, [e], 1, 6)[0] for e in examples]
    assert sorted_answers == one_by_one
    assert len(set(one_by_one)) > 1  # distinct answers, so a shuffled order would show


def test_mia_readings_come_back_in_split_order(setting):
    model, encoder, _ = setting
    batched_readings = mia.token_readings(model, encoder, PAIRS, 4)
    single = [mia.token_readings(model, encoder, [pair], 1)[0] for pair in PAIRS]
    for got, expected in zip(batched_readings, single, strict=True):
        assert got is not None and expected is not None
        assert got.log_probs == pytest.approx(expected.log_probs, rel=1e-5, abs=1e-6)
