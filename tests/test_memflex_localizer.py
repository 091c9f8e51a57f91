"""MemFlex localisation (eq. 8-9): selection from known gradients, zero gradients, no side effects."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import tiny_llama

from knowundo_bench.harness.data import QAPair
from knowundo_bench.harness.encoding import IGNORE_INDEX, PromptEncoder
from knowundo_bench.harness.labels import random_answer_labels
from knowundo_bench.harness.models import LoraSpec, attach_lora
from knowundo_bench.harness.training import LocalizerRun, UnlearnContext
from knowundo_bench.plugins import memflex_localizer
from knowundo_bench.plugins.memflex_localizer import (
    MemFlexLocalizerParams,
    cosine,
    localize,
    select,
)
from knowundo_bench.plugins.tiny_model import train_tokenizer


class FourTensors(torch.nn.Module):
    """A hand-built model: four named tensors whose gradients the test dictates."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.zeros(2))
        self.b = torch.nn.Parameter(torch.zeros(2))
        self.c = torch.nn.Parameter(torch.zeros(2))
        self.d = torch.nn.Parameter(torch.zeros(2))


KNOWN_GRADIENTS = {
    # name: (G_UL, G_RT)
    "a": ([1.0, 0.0], [0.0, 1.0]),      # orthogonal, large: selected
    "b": ([1.0, 1.0], [2.0, 2.0]),      # same direction (cos 1): kept frozen
    "c": ([1e-6, 0.0], [0.0, 1.0]),     # orthogonal but tiny: below sigma
    "d": ([0.0, 0.0], [0.0, 0.0]),      # all zeros (fresh LoRA A): cos 0, never NaN
}


@pytest.fixture
def known_gradients(monkeypatch):
    calls = iter([0, 1])

    def fake_average(model, batches, names, n_passes, allowed, generator, reporter=None):
        which = next(calls)  # first call: forget set (G_UL); second: retain set (G_RT)
        return {n: torch.tensor(KNOWN_GRADIENTS[n][which]) for n in names}

    monkeypatch.setattr(memflex_localizer, "average_gradients", fake_average)


@pytest.fixture
def context():
    tokenizer = train_tokenizer(["Question: who is Ann Lee? Answer: a writer"] * 5, 300)
    return UnlearnContext(encoder=PromptEncoder(tokenizer, 64), seed=0)


PAIRS = [QAPair(question="Who is Ann Lee?", answer="A writer.", scope="unlearn", split="train")]


def run_localize(params: MemFlexLocalizerParams, model, context):
    return localize(LocalizerRun("memflex", params, 0), model, PAIRS, PAIRS, context)


def test_selection_from_known_gradients(known_gradients, context):
    result = run_localize(MemFlexLocalizerParams(mu=0.5, sigma=1e-3), FourTensors(), context)
    assert result.selected == ["a"]
    stats = result.details["tensors"]
    assert stats["a"]["cos"] == pytest.approx(0.0) and stats["a"]["magnitude"] == pytest.approx(0.5)
    assert stats["b"]["cos"] == pytest.approx(1.0)
    assert stats["d"] == {"cos": 0.0, "magnitude": 0.0}
    assert not any(math.isnan(v) for s in stats.values() for v in s.values())


def test_mu_above_one_keeps_aligned_tensors_too(known_gradients, context):
    result = run_localize(MemFlexLocalizerParams(mu=0.999, sigma=0.1), FourTensors(), context)
    assert result.selected == ["a"]  # b's gradients point the same way (cos 1)
    assert select(result.details["tensors"], mu=1.01, sigma=0.1) == ["a", "b"]


def test_sigma_percentile(known_gradients, context):
    # magnitudes: a 0.5, b 1.0, c 5e-7, d 0 -> the 50th percentile lies between c and a
    result = run_localize(MemFlexLocalizerParams(mu=1.01, sigma_percentile=50), FourTensors(), context)
    assert result.selected == ["a", "b"]
    assert 5e-7 < result.details["sigma"] < 0.5


def test_empty_selection_is_an_error(known_gradients, context):
    with pytest.raises(ValueError, match="selected no tensor"):
        run_localize(MemFlexLocalizerParams(mu=-0.5, sigma=0.0), FourTensors(), context)


def test_params_reject_both_sigmas():
    with pytest.raises(ValueError, match="either sigma or sigma_percentile"):
        MemFlexLocalizerParams(sigma=1e-3, sigma_percentile=50)
    assert MemFlexLocalizerParams().sigma == 4e-4  # Table 12, privacy / LLaMA-2


def test_cosine_edge_cases():
    assert cosine(torch.zeros(3), torch.ones(3)) == 0.0
    assert cosine(torch.tensor([1.0, 0.0]), torch.tensor([-3.0, 0.0])) == pytest.approx(-1.0)
    assert cosine(torch.ones(2, 2), torch.ones(4)) == pytest.approx(1.0)


def test_random_labels_replace_only_answer_tokens():
    batch = {
        "input_ids": torch.tensor([[5, 6, 7, 8, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 0]]),
        "labels": torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 7, 8, IGNORE_INDEX]]),
    }
    allowed = torch.tensor([100, 101])
    out = random_answer_labels(batch, allowed, torch.Generator().manual_seed(0))
    assert out["input_ids"][0, :2].tolist() == [5, 6] and out["input_ids"][0, 4] == 0
    assert set(out["input_ids"][0, 2:4].tolist()) <= {100, 101}
    assert torch.equal(out["labels"][0, 2:4], out["input_ids"][0, 2:4])
    assert (out["labels"][0, [0, 1, 4]] == IGNORE_INDEX).all()


def test_real_gradients_on_fresh_lora_give_no_nan(context):
    """A fresh LoRA adapter has lora_B = 0, so every lora_A gradient is all zeros."""
    tokenizer = context.encoder.tokenizer
    model = attach_lora(tiny_llama(len(tokenizer)), LoraSpec(r=2, alpha=4))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = run_localize(MemFlexLocalizerParams(mu=0.99, sigma_percentile=10, n_passes=2), model, context)
    stats = result.details["tensors"]
    lora_a = [n for n in stats if "lora_A" in n]
    assert lora_a and all(stats[n] == {"cos": 0.0, "magnitude": 0.0} for n in lora_a)
    assert not any(n in result.selected for n in lora_a)
    assert any("lora_B" in n for n in result.selected)
    assert not any(math.isnan(v) for s in stats.values() for v in s.values())
    for name, param in model.named_parameters():  # localisation never changes the model
        assert torch.equal(param, before[name]), name
        assert param.grad is None
