"""An accumulation window run as one stacked forward/backward gives the same gradient as
its micro-batches one by one (issue 15), for every objective that is a ``WeightedNLL``."""

from __future__ import annotations

import random

import pytest
import torch

from helpers import authors_model, authors_tokenizer, two_authors
from knowundo_bench.benchmark.encoding import PromptEncoder
from knowundo_bench.config.params import TrainingParams
from knowundo_bench.plugins.methods import ga, ga_gd, ga_kl
from knowundo_bench.train.context import UnlearnContext
from knowundo_bench.train.hook_types import MethodRun
from knowundo_bench.train.labels import relabelled_cross_entropy
from knowundo_bench.train.loop import StackedWindows, make_epoch_batches, make_mixed_batches, mixed_dataset
from knowundo_bench.train.losses import WeightedNLL, weighted_nll
from knowundo_bench.train.packing import length_buckets

PAIRS, FORGET, RETAIN = two_authors()


@pytest.fixture(scope="module")
def tokenizer():
    return authors_tokenizer(PAIRS)


@pytest.fixture
def encoder(tokenizer) -> PromptEncoder:
    return PromptEncoder(tokenizer, 96, prompt_format="raw")


def window_gradient(model, compute, *args) -> tuple[float, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = compute(model, *args)
    return float(loss), [p.grad.clone() for p in model.parameters()]


def one_by_one(model, objective, window, divisor):
    total = torch.zeros(())
    for batch in window:
        loss = objective(model, batch) / divisor
        loss.backward()
        total += loss.detach()
    return total


def stacked(model, objective, window, divisor, chunk=None):
    batch, weights = objective.stacked_terms(window, divisor)
    chunk = chunk or len(weights)
    total = torch.zeros(())
    for start in range(0, len(weights), chunk):
        rows = slice(start, start + chunk)
        loss = weighted_nll(model, {k: v[rows] for k, v in batch.items()}, weights[rows])
        loss.backward()
        total += loss.detach()
    return total


def windows(encoder, kind: str, batch_size: int):
    forget, retain = encoder.encode_all(FORGET, with_eos=False), encoder.encode_all(RETAIN, with_eos=False)
    if kind == "mixed":
        return make_mixed_batches(encoder, mixed_dataset(forget, retain, 1, random.Random(0)), batch_size)
    if kind == "paired":
        return make_epoch_batches(encoder, forget, retain, batch_size, random.Random(0))
    return make_epoch_batches(encoder, forget, None, batch_size, random.Random(0))


OBJECTIVES = {
    "ga_gd": (ga_gd.weighted_objective(-1.0, 1.0), ("mixed", "paired")),
    "memflex": (ga_gd.weighted_objective(-0.4, 2.0), ("mixed",)),
    "ga": (ga.gradient_ascent, ("forget",)),
    "relabelled": (relabelled_cross_entropy, ("forget",)),
}


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
@pytest.mark.parametrize("batch_size", [1, 3])
def test_stacked_window_has_the_same_loss_and_gradient(name, batch_size, tokenizer, encoder):
    """The window's loss and every parameter's gradient agree to float tolerance, whole or
    split into passes of 2 examples, for a window of 3 micro-batches and the rest.
    Fails if a weight loses its share, its per-example or per-token mean, or the divisor."""
    objective, kinds = OBJECTIVES[name]
    model = authors_model(tokenizer)
    for kind in kinds:
        batches = windows(encoder, kind, batch_size)
        assert len(batches) > 3
        for window in (batches[:3], batches[3:]):
            divisor = float(len(window))
            loss, expected = window_gradient(model, one_by_one, objective, window, divisor)
            for chunk in (None, 2):
                got_loss, got = window_gradient(model, stacked, objective, window, divisor, chunk)
                assert got_loss == pytest.approx(loss, rel=1e-5, abs=1e-6)
                for a, b in zip(got, expected, strict=True):
                    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_mixed_windows_hold_both_parts_and_unequal_lengths(encoder):
    """The equivalence above is tested where it could fail: micro-batches of mixed parts,
    shares below 1 and examples of different lengths (padding inside the stack)."""
    batches = windows(encoder, "mixed", 3)
    assert any(len(b) == 2 for b in batches)
    assert any(float(part["share"]) < 1 for b in batches for part in b.values())
    widths = {part["input_ids"].shape[1] for b in batches for part in b.values()}
    assert len(widths) > 1


def train_ga_gd(tokenizer, encoder, **params):
    model = authors_model(tokenizer)
    method_params = ga_gd.GAGDParams(epochs=2, batch_size=1, grad_accum=4, lr=1e-3, **params)
    report = ga_gd.unlearn(
        method=MethodRun("ga_gd", "ga_gd", method_params, 0),
        model=model,
        forget=FORGET,
        retain=RETAIN,
        context=UnlearnContext(encoder=encoder, seed=0),
    )
    return model, report


def test_training_with_stacked_windows_matches_one_pass_per_micro_batch(tokenizer, encoder):
    """Same steps, losses and final weights; one pass per step instead of one per micro-batch."""
    stacked_model, stacked_report = train_ga_gd(tokenizer, encoder)
    plain_model, plain_report = train_ga_gd(tokenizer, encoder, stack_window=False)
    assert len(stacked_report.step_losses) == len(plain_report.step_losses) > 2
    assert stacked_report.stacked_windows and not plain_report.stacked_windows
    assert set(stacked_report.forward_passes) == {1}
    assert max(plain_report.forward_passes) == 4
    assert stacked_report.step_losses == pytest.approx(plain_report.step_losses, rel=1e-4, abs=1e-5)
    for a, b in zip(stacked_model.parameters(), plain_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert stacked_report.summary()["forward_passes_per_step"] == 1


class RunsOutOfMemory(torch.nn.Module):
    """A model that raises CUDA's out-of-memory error on a forward of more than 2 rows."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.refusals = 0

    def forward(self, input_ids, attention_mask):
        if input_ids.shape[0] > 2:
            self.refusals += 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.model(input_ids=input_ids, attention_mask=attention_mask)


def test_a_window_that_runs_out_of_memory_is_redone_in_halves(tokenizer, encoder):
    """The whole window (5 examples) does not fit: it is redone with at most 3, then 2
    examples a pass, with the same gradient; later windows start at 2 examples a pass."""
    model = authors_model(tokenizer)
    wrapped = RunsOutOfMemory(model)
    objective = ga_gd.weighted_objective(-1.0, 1.0)
    batches = windows(encoder, "mixed", 1)
    window = batches[:5]
    _, expected = window_gradient(model, one_by_one, objective, window, 5.0)

    class Accelerator:
        device = torch.device("cpu")

        @staticmethod
        def backward(loss):
            loss.backward()

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    runner = StackedWindows(objective, Accelerator(), optimizer, autocast=False)
    runner.packs = False  # the plan below is the CPU's (length buckets)
    lengths = objective.stacked_terms(window, 5.0)[0]["attention_mask"].sum(dim=1).tolist()
    model.zero_grad(set_to_none=True)
    done = runner.backward(wrapped, window, 5.0)
    assert runner.chunk == 2 and wrapped.refusals >= 1
    assert done.passes == len(length_buckets(lengths, max_rows=2).passes) >= 3
    for a, b in zip([p.grad for p in model.parameters()], expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    refusals = wrapped.refusals
    runner.backward(wrapped, batches[5:9], 4.0)
    assert wrapped.refusals == refusals


def test_objectives_that_do_not_decompose_run_one_pass_per_micro_batch(tokenizer, encoder):
    """GA+KL's KL term needs the reference model's distributions: it is no WeightedNLL,
    so its windows are never stacked, whatever ``stack_window`` says."""
    model = authors_model(tokenizer)
    objective = ga_kl.ga_kl_objective(ga_kl.frozen_copy(model), -1.0, 1.0)
    assert not isinstance(objective, WeightedNLL)
    report = UnlearnContext(encoder=encoder, seed=0).train(
        model,
        objective=objective,
        params=ga_kl.GAKLParams(epochs=1, batch_size=1, grad_accum=4, lr=1e-4),
        forget=FORGET,
        retain=RETAIN,
    )
    assert not report.stacked_windows and max(report.forward_passes) == 4


def test_stacked_terms_reject_a_window_without_the_objectives_parts(encoder):
    only_retain = [{"retain": windows(encoder, "paired", 1)[0]["retain"]}]
    with pytest.raises(ValueError, match="none of the parts"):
        ga.gradient_ascent.stacked_terms(only_retain, 1.0)


def test_weighted_nll_is_exported_for_plugins():
    import knowundo_bench.api as api

    assert api.WeightedNLL is WeightedNLL
    assert isinstance(TrainingParams().stack_window, bool) and TrainingParams().stack_window


def test_scope_terms_weigh_each_present_part_by_its_share_by_default():
    """A part's share is 1 in a paired batch, its fraction of the examples in a mixed one.
    Mutations: the default share, the default ``by_share``, the error's message."""
    from knowundo_bench.train.losses import scope_terms, share

    assert share({}) == 1.0
    two = lambda part: torch.tensor(2.0)  # noqa: E731
    mixed = {"forget": {"share": 0.25}, "retain": {"share": 0.75}}
    assert float(scope_terms(mixed, forget=two, retain=two)) == 2.0
    assert float(scope_terms({"forget": mixed["forget"]}, forget=two, retain=two)) == 0.5
    assert float(scope_terms({"forget": mixed["forget"]}, by_share=False, forget=two, retain=two)) == 2.0
    assert float(scope_terms({"forget": {}, "retain": {}}, forget=two, retain=two)) == 4.0
    with pytest.raises(ValueError, match=r"^batch has none of the parts \['forget', 'retain'\]$"):
        scope_terms({"other": {}}, forget=two, retain=two)
