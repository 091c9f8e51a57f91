"""Each method's defining property (issue: all seven baselines, NPO family, neuron-level
localisation), checked on a tiny Llama with real training where training matters."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import authors_model, authors_tokenizer, two_authors
from knowundo_bench.benchmark.encoding import IGNORE_INDEX, PromptEncoder
from knowundo_bench.config.params import TrainingParams
from knowundo_bench.core.progress import NO_PROGRESS
from knowundo_bench.plugins.localizers import memflex_neurons
from knowundo_bench.plugins.localizers.memflex import MemFlexLocalizerParams
from knowundo_bench.plugins.methods import ga_kl
from knowundo_bench.plugins.methods.adversarial import adversarial_labels
from knowundo_bench.plugins.methods.npo import (
    REFERENCE,
    forget_npo_loss,
    npo_loss,
    with_reference_likelihood,
)
from knowundo_bench.plugins.methods.random_labels import randomly_labelled
from knowundo_bench.plugins.methods.simnpo import simnpo_loss
from knowundo_bench.train.context import UnlearnContext
from knowundo_bench.train.hook_types import LocalizerRun, MethodRun
from knowundo_bench.train.labels import allowed_tokens
from knowundo_bench.train.losses import answer_log_likelihood, answer_loss

PAIRS, FORGET, RETAIN = two_authors()


@pytest.fixture(scope="module")
def tokenizer():
    return authors_tokenizer(PAIRS)


@pytest.fixture
def encoder(tokenizer) -> PromptEncoder:
    return PromptEncoder(tokenizer, 96)


@pytest.fixture
def model(tokenizer):
    return authors_model(tokenizer)


def state(model) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def test_adversarial_labels_are_the_vanilla_models_best_other_token(model, encoder):
    examples = encoder.encode_all(FORGET)
    labelled = adversarial_labels(model, encoder, examples, NO_PROGRESS)
    checked = 0
    for original, adversarial in zip(examples, labelled, strict=True):
        start = original.prompt_length
        assert adversarial.input_ids == original.input_ids  # eq. 7 conditions on the gold prefix
        assert set(adversarial.labels[:start]) == {IGNORE_INDEX}
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([original.input_ids])).logits[0]
        for position in range(start, len(original.input_ids)):
            gold, label = original.labels[position], adversarial.labels[position]
            ranked = logits[position - 1].argsort(descending=True).tolist()
            best_other = ranked[0] if ranked[0] != gold else ranked[1]
            assert label != gold
            assert label == best_other
            checked += 1
    assert checked > 100


def test_random_labels_are_random_targets_on_real_inputs(encoder, tokenizer):
    """Official "completely random": inputs unchanged, a random non-special target at
    every non-special position (prompt included); ``answer`` restricts them."""
    examples = encoder.encode_all(FORGET)
    special = set(tokenizer.all_special_ids)
    labelled = randomly_labelled(examples, allowed_tokens(tokenizer), special, seed=0)
    targets = changed = prompt_targets = 0
    for original, random_example in zip(examples, labelled, strict=True):
        assert random_example.input_ids == original.input_ids  # the model reads the real text
        for token, label, gold in zip(original.input_ids, random_example.labels, original.labels, strict=True):
            if token in special:
                assert label == IGNORE_INDEX
                continue
            assert label not in special and label != IGNORE_INDEX
            targets += 1
            changed += label != gold
        prompt_targets += sum(label != IGNORE_INDEX for label in random_example.labels[: original.prompt_length])
    assert changed / targets > 0.95 and prompt_targets > 0
    assert randomly_labelled(examples, allowed_tokens(tokenizer), special, seed=0) == labelled
    assert randomly_labelled(examples, allowed_tokens(tokenizer), special, seed=1) != labelled
    answer_only = randomly_labelled(examples, allowed_tokens(tokenizer), special, seed=0, targets="answer")
    for original, random_example in zip(examples, answer_only, strict=True):
        start = original.prompt_length
        assert set(random_example.labels[:start]) == {IGNORE_INDEX}
        assert all(label != IGNORE_INDEX for label in random_example.labels[start:])


def test_kl_reference_model_is_frozen_and_never_changes(model, encoder, monkeypatch):
    captured = {}
    real_frozen_copy = ga_kl.frozen_copy

    def spy(m):
        captured["reference"] = real_frozen_copy(m)
        return captured["reference"]

    monkeypatch.setattr(ga_kl, "frozen_copy", spy)
    vanilla = state(model)
    params = ga_kl.GAKLParams(epochs=2, lr=1e-2, batch_size=4, grad_accum=1)
    ga_kl.unlearn(
        method=MethodRun("ga_kl", "ga_kl", params, 0),
        model=model,
        forget=FORGET,
        retain=RETAIN,
        context=UnlearnContext(encoder=encoder, seed=0),
    )
    reference = captured["reference"]
    assert not reference.training and not any(p.requires_grad for p in reference.parameters())
    assert all(torch.equal(value, vanilla[name]) for name, value in reference.state_dict().items())
    assert any(not torch.equal(value, vanilla[name]) for name, value in model.state_dict().items())
    batch = encoder.collate(encoder.encode_all(RETAIN[:4]))
    assert ga_kl.retain_kl(reference, reference, batch).item() == pytest.approx(0.0, abs=1e-6)
    assert ga_kl.retain_kl(model, reference, batch).item() > 1e-3  # the trained model has drifted


def test_npo_loss_equals_a_hand_computed_value():
    log_likelihood, reference, beta = torch.tensor([-2.0, -5.0]), torch.tensor([-1.0, -4.5]), 0.1

    def log_sigmoid(x: float) -> float:
        return -math.log(1 + math.exp(-x))

    # -(2/beta) * mean(log sigmoid(-beta * (log pi - log pi_ref))): arguments 0.1 and 0.05
    expected = -(2 / beta) * (log_sigmoid(0.1) + log_sigmoid(0.05)) / 2
    assert npo_loss(log_likelihood, reference, beta).item() == pytest.approx(expected, rel=1e-6)
    # SimNPO: -(2/beta) * mean(log sigmoid(-(beta/|y|) * log pi - gamma)), |y| = 4 and 10
    lengths = torch.tensor([4, 10])
    expected = -(2 / 2.5) * (log_sigmoid(2.5 / 4 * 2.0 - 0.5) + log_sigmoid(2.5 / 10 * 5.0 - 0.5)) / 2
    assert simnpo_loss(log_likelihood, lengths, 2.5, 0.5).item() == pytest.approx(expected, rel=1e-6)


def test_npo_reference_is_the_vanilla_likelihood_so_the_first_loss_is_2_log_2_over_beta(model, encoder):
    context = UnlearnContext(encoder=encoder, seed=0)
    examples = with_reference_likelihood(model, encoder, encoder.encode_all(FORGET[:3]), context)
    first = examples[0]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([first.input_ids])).logits[0].log_softmax(-1)
    by_hand = sum(logits[i - 1, first.input_ids[i]].item() for i in range(first.prompt_length, len(first.input_ids)))
    assert first.extras[REFERENCE] == pytest.approx(by_hand, rel=1e-5)
    batch = encoder.collate(examples)
    assert batch[REFERENCE].shape == (3,)
    assert forget_npo_loss(model, batch, beta=0.1).item() == pytest.approx(2 / 0.1 * math.log(2), rel=1e-4)
    log_likelihood, lengths = answer_log_likelihood(model, batch)
    assert lengths.tolist() == [len(e.input_ids) - e.prompt_length for e in examples]
    assert log_likelihood.sum().item() < 0


def test_row_statistics_per_output_row():
    g_ul = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    g_rt = torch.tensor([[0.0, 1.0], [2.0, 2.0], [1.0, 1.0]])
    cos, magnitude = memflex_neurons.row_statistics(g_ul, g_rt)
    assert cos.tolist() == pytest.approx([0.0, 1.0, 0.0])
    assert magnitude.tolist() == pytest.approx([0.5, 1.0, 0.0])
    cos, magnitude = memflex_neurons.row_statistics(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.0]))
    assert cos.tolist() == pytest.approx([-1.0]) and magnitude.tolist() == pytest.approx([0.5])


def test_neuron_localizer_leaves_unselected_rows_bit_identical(model, encoder):
    context = UnlearnContext(encoder=encoder, seed=0)
    params = MemFlexLocalizerParams(mu=0.96, sigma_percentile=50, n_passes=1)
    localization = memflex_neurons.localize(
        localizer=LocalizerRun("memflex_neurons", params, 0), model=model, forget=FORGET, retain=RETAIN, context=context
    )
    assert localization.row_masks, "expected some tensors with only part of their rows selected"
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    context.trainable, context.row_masks = set(localization.selected), localization.row_masks
    # Weight decay on: the masked rows must escape AdamW's decoupled decay as well.
    report = context.train(
        model,
        objective=lambda m, b: -answer_loss(m, b["forget"]),
        params=TrainingParams(epochs=2, lr=1e-2, batch_size=4, grad_accum=1, weight_decay=0.1),
        forget=FORGET,
    )
    assert len(report.step_losses) == 2 * math.ceil(len(FORGET) / 4)
    for name, param in model.named_parameters():
        mask = localization.row_masks.get(name)
        if name not in localization.selected:
            assert torch.equal(param, before[name]), name
        elif mask is not None:
            assert torch.equal(param[~mask], before[name][~mask]), name
            assert not torch.equal(param[mask], before[name][mask]), name
    masked_rows = sum(int((~m).sum()) * before[n][0].numel() for n, m in localization.row_masks.items())
    selected = sum(before[n].numel() for n in localization.selected)
    assert report.trainable_parameters == selected - masked_rows


class FixedLogits(torch.nn.Module):
    """A stand-in model: the same logits whatever it reads, and what it was given."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.seen: dict = {}

    def forward(self, input_ids, attention_mask=None):
        self.seen = {"input_ids": input_ids, "attention_mask": attention_mask}
        return type("Output", (), {"logits": self.logits})()


def test_each_examples_loss_is_the_mean_over_its_own_answer_tokens():
    """One answer token, two, none: each example's mean cross-entropy over its labelled
    tokens (position t's logits against token t + 1), 0 without any; the model reads the
    batch's attention mask."""
    from knowundo_bench.train.losses import example_losses

    torch.manual_seed(0)
    logits = torch.randn(3, 4, 6)
    labels = torch.tensor(
        [[IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 2], [IGNORE_INDEX, IGNORE_INDEX, 5, 1], [IGNORE_INDEX] * 4]
    )
    batch = {
        "input_ids": torch.zeros(3, 4, dtype=torch.long),
        "attention_mask": torch.tensor([[1, 1, 1, 1]] * 2 + [[1, 1, 0, 0]]),
        "labels": labels,
    }
    model = FixedLogits(logits)
    losses = example_losses(model, batch)
    ce = lambda row, t, token: float(torch.nn.functional.cross_entropy(logits[row, t - 1 : t], torch.tensor([token])))  # noqa: E731
    assert losses.tolist() == pytest.approx([ce(0, 3, 2), (ce(1, 2, 5) + ce(1, 3, 1)) / 2, 0.0], rel=1e-6)
    assert model.seen["attention_mask"] is batch["attention_mask"]
