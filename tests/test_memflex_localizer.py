"""MemFlex localisation (eq. 8-9): selection from known gradients, zero gradients, no side effects."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import pytest
import torch

from helpers import tiny_llama
from knowundo_bench.benchmark.encoding import IGNORE_INDEX, Encoded, PromptEncoder
from knowundo_bench.benchmark.pairs import QAPair
from knowundo_bench.modeling.bundles import LoraSpec, attach_lora
from knowundo_bench.plugins.localizers import memflex as memflex_localizer
from knowundo_bench.plugins.localizers.memflex import (
    MemFlexLocalizerParams,
    corrupted_copy,
    cosine,
    localize,
    random_targets,
    select,
)
from knowundo_bench.plugins.models.tiny import train_tokenizer
from knowundo_bench.train.context import UnlearnContext
from knowundo_bench.train.hook_types import LocalizerRun
from knowundo_bench.train.labels import allowed_tokens


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
    "a": ([1.0, 0.0], [0.0, 1.0]),  # orthogonal, large: selected
    "b": ([1.0, 1.0], [2.0, 2.0]),  # same direction (cos 1): kept frozen
    "c": ([1e-6, 0.0], [0.0, 1.0]),  # orthogonal but tiny: below sigma
    "d": ([0.0, 0.0], [0.0, 0.0]),  # all zeros (fresh LoRA A): cos 0, never NaN
}


@pytest.fixture
def known_gradients(monkeypatch):
    calls = itertools.cycle([0, 1])
    asked: list[list[str]] = []  # the tensors each call was asked for

    def fake_average(model, encoder, examples, names, params, allowed, generator, reporter=None):
        which = next(calls)  # first call: forget set (G_UL); second: retain set (G_RT)
        asked.append(list(names))
        return {n: torch.tensor(KNOWN_GRADIENTS[n][which]) for n in names}

    monkeypatch.setattr(memflex_localizer, "average_gradients", fake_average)
    return asked


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
    # c and d cannot pass the magnitude test, so their G_RT was never computed
    assert stats["c"]["cos"] is None and stats["d"] == {"cos": None, "magnitude": 0.0}
    assert cosine(torch.zeros(2), torch.tensor([0.0, 1.0])) == 0.0  # all zeros (fresh LoRA A): 0, never NaN
    assert not any(math.isnan(v) for s in stats.values() for v in s.values() if v is not None)


def test_the_retain_pass_computes_only_tensors_that_could_be_selected(known_gradients, context):
    """G_RT is asked for the tensors whose magnitude is above sigma (and the other
    tensors are frozen meanwhile); with mu above 1 the cosine cannot fail, so no
    retain pass runs at all, and the selection is the magnitude test alone."""
    model = FourTensors()
    run_localize(MemFlexLocalizerParams(mu=0.5, sigma=1e-3), model, context)
    assert known_gradients == [["a", "b", "c", "d"], ["a", "b"]]
    assert all(p.requires_grad for p in model.parameters())  # unfrozen afterwards
    known_gradients.clear()
    result = run_localize(MemFlexLocalizerParams(mu=1.5, sigma=1e-3), model, context)
    assert known_gradients == [["a", "b", "c", "d"]] and result.selected == ["a", "b"]
    assert all(s["cos"] is None for s in result.details["tensors"].values())


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
    assert MemFlexLocalizerParams().sigma == "auto" and MemFlexLocalizerParams().mu == "auto"


def test_auto_thresholds_are_table_12_by_domain_and_family(known_gradients, context):
    llama = FourTensors()
    llama.config = SimpleNamespace(model_type="llama")
    result = run_localize(MemFlexLocalizerParams(), llama, context)
    assert (result.details["mu"], result.details["sigma"]) == (0.96, 4e-4)  # privacy, LLaMA-2
    context.domain = "copyright"
    qwen = FourTensors()
    qwen.config = SimpleNamespace(model_type="qwen2")
    result = run_localize(MemFlexLocalizerParams(sigma=0.1), qwen, context)
    assert (result.details["mu"], result.details["sigma"]) == (0.94, 0.1)  # copyright, Qwen; sigma given
    other = FourTensors()
    other.config = SimpleNamespace(model_type="gpt2")
    with pytest.raises(ValueError, match="model type 'gpt2': give mu and sigma"):
        run_localize(MemFlexLocalizerParams(), other, context)
    assert run_localize(MemFlexLocalizerParams(mu=0.5, sigma=1e-3), other, context).selected == ["a"]


def test_cosine_edge_cases():
    assert cosine(torch.zeros(3), torch.ones(3)) == 0.0
    assert cosine(torch.tensor([1.0, 0.0]), torch.tensor([-3.0, 0.0])) == pytest.approx(-1.0)
    assert cosine(torch.ones(2, 2), torch.ones(4)) == pytest.approx(1.0)


def test_corruption_replaces_half_the_answer_in_inputs_and_targets():
    """The official scheme: floor(n/2) draws with replacement among the n answer
    positions (not the trailing EOS); the targets follow the corrupted input."""
    example = Encoded(
        input_ids=(1, 5, 6, 7, 8, 9, 10, 11, 2),
        labels=(IGNORE_INDEX, IGNORE_INDEX, 6, 7, 8, 9, 10, 11, 2),
        prompt_length=2,
    )
    allowed = torch.tensor([100, 101, 102])
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        copy = corrupted_copy(example, allowed, 2, generator)
        changed = [i for i, (a, b) in enumerate(zip(copy.input_ids, example.input_ids, strict=True)) if a != b]
        assert 1 <= len(changed) <= 3  # floor(7/2) = 3 draws, with replacement
        assert all(2 <= i <= 7 and copy.input_ids[i] in {100, 101, 102} for i in changed)
        assert copy.input_ids[:2] == (1, 5) and copy.input_ids[-1] == 2
        assert copy.labels[:2] == (IGNORE_INDEX, IGNORE_INDEX) and copy.labels[2:] == copy.input_ids[2:]
        targets = random_targets(example, allowed, 2, generator)
        assert targets.input_ids == example.input_ids and targets.labels[:2] == (IGNORE_INDEX, IGNORE_INDEX)


def test_real_gradients_on_fresh_lora_give_no_nan(context):
    """A fresh LoRA adapter has lora_B = 0, so every lora_A gradient is all zeros."""
    tokenizer = context.encoder.tokenizer
    model = attach_lora(tiny_llama(len(tokenizer)), LoraSpec(r=2, alpha=4))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = run_localize(MemFlexLocalizerParams(mu=0.99, sigma_percentile=10, n_passes=2), model, context)
    stats = result.details["tensors"]
    lora_a = [n for n in stats if "lora_A" in n]
    # magnitude 0: never selected (its cosine, when computed because sigma is 0 too, is 0.0, not NaN)
    assert lora_a and all(stats[n]["magnitude"] == 0.0 and stats[n]["cos"] in (None, 0.0) for n in lora_a)
    assert not any(n in result.selected for n in lora_a)
    assert any("lora_B" in n for n in result.selected)
    assert not any(math.isnan(v) for s in stats.values() for v in s.values() if v is not None)
    for name, param in model.named_parameters():  # localisation never changes the model
        assert torch.equal(param, before[name]), name
        assert param.grad is None


def test_tensors_near_a_threshold_are_reported(monkeypatch, context):
    """Another CPU's float32 kernels may move a statistic in its last bits: a tensor
    whose cosine lies within float noise of mu is listed, one far from it is not."""
    c = 0.96 - 1e-9
    g_ul = {
        "a": torch.tensor([c, math.sqrt(1 - c * c)], dtype=torch.float64),
        "b": torch.tensor([0.0, 1.0]),
        "c": torch.tensor([0.0, 1.0]),
        "d": torch.tensor([1.0, 0.0]),
    }
    g_rt = {n: torch.tensor([1.0, 0.0], dtype=torch.float64) for n in "abcd"}
    gradients = iter([g_ul, g_rt])
    monkeypatch.setattr(memflex_localizer, "average_gradients", lambda *args, **kw: next(gradients))
    result = run_localize(MemFlexLocalizerParams(mu=0.96, sigma=0.1), FourTensors(), context)
    assert result.selected == ["a", "b", "c"]  # d: cos 1
    assert result.details["near_threshold"] == ["a"]
    gradients = iter([g_ul, g_rt])
    result = run_localize(MemFlexLocalizerParams(mu=0.99, sigma=0.5), FourTensors(), context)
    assert result.selected == ["a"] and result.details["near_threshold"] == ["b", "c", "d"]  # magnitude 0.5 = sigma


def test_selection_is_the_same_with_one_or_two_threads(context):
    """On one machine the localisation gradients are bitwise equal at 1 and 2 threads."""
    tokenizer = context.encoder.tokenizer
    threads = torch.get_num_threads()
    runs = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            model = tiny_llama(len(tokenizer), hidden_size=64)
            params = MemFlexLocalizerParams(mu=0.99, sigma_percentile=50, n_passes=3)
            g_ul, g_rt = memflex_localizer.scope_gradients(
                LocalizerRun("memflex", params, 0), model, PAIRS * 4, PAIRS * 4, context
            )
            runs.append((g_ul, g_rt, run_localize(params, model, context).selected))
    finally:
        torch.set_num_threads(threads)
    (ul1, rt1, selected1), (ul2, rt2, selected2) = runs
    assert rt1.keys() == rt2.keys() and len(rt1) > 0
    assert all(torch.equal(ul1[n], ul2[n]) for n in ul1) and all(torch.equal(rt1[n], rt2[n]) for n in rt1)
    assert selected1 == selected2


def test_fast_localizer_gradient_is_the_mean_over_label_draws(context):
    """One forward and one backward give exactly the mean over the N label draws of the
    per-draw, per-example gradients (the inputs never change, so neither do the logits)."""
    from knowundo_bench.plugins.localizers.memflex_fast import fast_average_gradients

    encoder = context.encoder
    tokenizer = encoder.tokenizer
    model = tiny_llama(len(tokenizer), hidden_size=32).eval()
    names = [n for n, _ in model.named_parameters()]
    examples = encoder.encode_all(PAIRS * 3, with_eos=True)
    allowed = allowed_tokens(tokenizer)
    params = MemFlexLocalizerParams(n_passes=4, batch_size=2, mu=0.9, sigma=0.0)
    fast = fast_average_gradients(model, encoder, examples, names, params, allowed, torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    draws = [random_targets(e, allowed, tokenizer.eos_token_id, generator) for _ in range(4) for e in examples]
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for draw in draws:
        model.zero_grad()
        model(input_ids=torch.tensor([draw.input_ids]), labels=torch.tensor([draw.labels])).loss.backward()
        for n, p in model.named_parameters():
            expected[n] += p.grad / len(draws)
    for n in names:
        assert torch.allclose(fast[n], expected[n], atol=1e-6, rtol=1e-4), n
    assert any(d.labels != e.labels for d, e in zip(draws, examples * 4, strict=True))
