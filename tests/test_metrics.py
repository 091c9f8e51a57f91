"""Tests of the metric primitives on hand-made tensors with hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from knowundo_bench.benchmark.encoding import IGNORE_INDEX
from knowundo_bench.evaluate.metrics import answer_nll, per_example_accuracy, perplexity, rouge_l

X = IGNORE_INDEX


def one_hot_logits(argmaxes: list[list[int]], vocab: int = 4) -> torch.Tensor:
    """Logits whose argmax at [b, t] is ``argmaxes[b][t]`` (value 5 there, 0 elsewhere)."""
    batch, length = len(argmaxes), len(argmaxes[0])
    logits = torch.zeros(batch, length, vocab)
    for b, row in enumerate(argmaxes):
        for t, token in enumerate(row):
            logits[b, t, token] = 5.0
    return logits


# --------------------------------------------------------------------------------------
# per_example_accuracy
# --------------------------------------------------------------------------------------


def test_accuracy_uses_causal_shift_and_answer_tokens_only():
    """Logits at t are scored against the label at t+1, prompt (-100) positions ignored.

    Row 0: answers at t=3 (gold 2) and t=4 (gold 3); they are predicted by logits at t=2
    (argmax 2, right) and t=3 (argmax 0, wrong) -> 1/2. Without the shift both would be
    wrong (argmax 0 at t=3 and t=4) -> 0.
    Row 1: answers at t=2,3,4 = 1,1,2 predicted by t=1,2,3 with argmax 1,1,2 -> 3/3.
    Without the shift t=3 (argmax 2 vs gold 1) would be wrong.
    The last position's logits never predict anything.
    """
    labels = torch.tensor([[X, X, X, 2, 3], [X, X, 1, 1, 2]])
    logits = one_hot_logits([[3, 3, 2, 0, 0], [0, 1, 1, 2, 3]])
    accuracy = per_example_accuracy(logits, labels)
    assert accuracy.shape == (2,)
    assert accuracy[0].item() == 0.5
    assert accuracy[1].item() == 1.0


def test_accuracy_all_wrong_is_zero():
    """An example whose every answer token is mispredicted scores exactly 0."""
    labels = torch.tensor([[X, X, 1, 2, 3]])
    logits = one_hot_logits([[0, 0, 0, 0, 0]])
    assert per_example_accuracy(logits, labels)[0].item() == 0.0


def test_accuracy_fraction_thirds():
    """Two right out of three answer tokens gives exactly 2/3 (not rounded)."""
    labels = torch.tensor([[X, 3, 2, 1, X]])
    # predictions for labels at t=1,2,3 come from t=0,1,2: 3 (right), 0 (wrong), 1 (right)
    logits = one_hot_logits([[3, 0, 1, 1, 1]])
    assert per_example_accuracy(logits, labels)[0].item() == pytest.approx(2 / 3, abs=1e-12)


def test_accuracy_nan_for_example_without_answer_tokens():
    """No answer tokens -> NaN (0/0), while the other example of the batch is unaffected.

    A label at position 0 cannot be predicted (there is no earlier position), so an
    example whose only non-ignored label sits at t=0 also has no scored tokens.
    """
    labels = torch.tensor([[X, X, X, X, X], [1, X, X, X, X], [X, X, X, X, 2]])
    logits = one_hot_logits([[0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 2, 0]])
    accuracy = per_example_accuracy(logits, labels)
    assert math.isnan(accuracy[0].item())
    assert math.isnan(accuracy[1].item())
    assert accuracy[2].item() == 1.0


# --------------------------------------------------------------------------------------
# answer_nll
# --------------------------------------------------------------------------------------


def _nll(row: list[float], gold: int) -> float:
    """-log softmax(row)[gold], computed with math only."""
    return -math.log(math.exp(row[gold]) / sum(math.exp(v) for v in row))


def test_answer_nll_matches_hand_computed_softmax():
    """Sum of -log p(gold) over answer tokens (shifted) and their count.

    Row 0 labels [-, 2, 0]: gold 2 is scored with logits at t=0, gold 0 with t=1;
    the logits at t=2 are never used. Row 1's only label sits at t=0 and is never
    scored, so it adds neither loss nor tokens.
    """
    l00, l01, l02 = [0.5, -1.0, 2.0], [1.0, 1.0, 0.0], [9.0, -9.0, 0.0]
    logits = torch.tensor([[l00, l01, l02], [[3.0, 0.0, 0.0]] * 3])
    labels = torch.tensor([[X, 2, 0], [1, X, X]])
    expected = _nll(l00, 2) + _nll(l01, 0)
    total, count = answer_nll(logits, labels)
    assert count == 2
    assert isinstance(total, float) and isinstance(count, int)
    assert total == pytest.approx(expected, rel=1e-6)


def test_answer_nll_uniform_logits_is_log_vocab_per_token():
    """Uniform logits over V tokens cost log(V) per answer token."""
    vocab = 4
    logits = torch.zeros(2, 5, vocab)
    labels = torch.tensor([[X, X, 1, 2, 3], [X, 0, X, X, X]])
    total, count = answer_nll(logits, labels)
    assert count == 4
    assert total == pytest.approx(4 * math.log(vocab), rel=1e-6)


def test_answer_nll_half_precision_logits():
    """Half-precision logits are scored in float32 and give the same value."""
    row = [0.5, -1.0, 2.0, 0.25]
    logits = torch.tensor([[row, row]], dtype=torch.float16)
    labels = torch.tensor([[X, 3]])
    total, count = answer_nll(logits, labels)
    assert count == 1
    assert total == pytest.approx(_nll(row, 3), rel=1e-3)


# --------------------------------------------------------------------------------------
# perplexity
# --------------------------------------------------------------------------------------


def test_perplexity_is_exp_of_mean_nll():
    """exp(sum/n): 2 tokens costing log(3) each -> 3; zero loss -> 1."""
    assert perplexity(2 * math.log(3.0), 2) == pytest.approx(3.0, rel=1e-12)
    assert perplexity(0.0, 7) == 1.0
    assert perplexity(3.0, 2) == pytest.approx(math.exp(1.5), rel=1e-12)


def test_perplexity_overflow_is_inf_without_exception():
    """A mean NLL far beyond exp's range gives inf instead of raising OverflowError."""
    assert perplexity(1e6, 1) == math.inf
    assert perplexity(math.inf, 3) == math.inf


def test_perplexity_nan_inputs_and_no_tokens():
    """NaN NLL -> NaN; zero tokens -> NaN (no ZeroDivisionError)."""
    assert math.isnan(perplexity(math.nan, 4))
    assert math.isnan(perplexity(0.0, 0))
    assert math.isnan(perplexity(5.0, 0))


# --------------------------------------------------------------------------------------
# rouge_l
# --------------------------------------------------------------------------------------


def test_rouge_l_prefix_prediction():
    """LCS 3 of a 3-word prediction vs a 6-word reference: P=1, R=1/2, F=2/3."""
    assert rouge_l("the cat sat", "the cat sat on the mat") == pytest.approx(2 / 3, abs=1e-9)


def test_rouge_l_subsequence_not_substring():
    """LCS counts a non-contiguous subsequence: "a x b y c" vs "a b c": P=3/5, R=1, F=3/4."""
    assert rouge_l("a x b y c", "a b c") == pytest.approx(0.75, abs=1e-9)


def test_rouge_l_identical_and_disjoint():
    """Identical strings score 1.0, strings without common words 0.0."""
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    assert rouge_l("dogs bark loudly", "the cat sat") == 0.0


def test_rouge_l_empty_prediction_is_zero():
    """An empty prediction (model generated nothing) scores 0, not an error."""
    assert rouge_l("", "the cat sat") == 0.0


def test_rouge_l_returns_plain_float():
    """The score is a Python float (results are serialised to JSON)."""
    assert type(rouge_l("a b", "a c")) is float


def test_a_refused_request_scores_no_answer_and_leaves_perplexity():
    """Behind a guard a refused request produces none of its answer tokens (accuracy 0)
    and has no likelihood (out of perplexity); an example without answer tokens stays
    unscored."""
    from knowundo_bench.evaluate.scopes import ExampleScores

    nan = float("nan")
    scores = ExampleScores(
        accuracy=torch.tensor([1.0, nan, 0.5, 1.0]),
        nll_sums=torch.tensor([1.0, 2.0, 3.0, 4.0]),
        token_counts=torch.tensor([2, 0, 3, 4]),
    )
    guarded = scores.refusing(torch.tensor([True, True, False, True]))
    assert guarded.accuracy[[0, 2, 3]].tolist() == [0.0, 0.5, 0.0] and guarded.accuracy[1].isnan()
    assert guarded.nll_sums.tolist() == [0.0, 0.0, 3.0, 0.0]
    assert guarded.token_counts.tolist() == [0, 0, 3, 0]
    accuracy, ppl, ppl_token = guarded.summary()
    assert accuracy == pytest.approx(100 * 0.5 / 3)
    assert ppl == pytest.approx(math.exp(1.0)) and ppl_token == pytest.approx(math.exp(1.0))
    untouched = scores.refusing(torch.tensor([False, False, False, False]))
    assert untouched.nll_sums.tolist() == scores.nll_sums.tolist()
    assert untouched.accuracy[[0, 2, 3]].tolist() == [1.0, 0.5, 1.0]
