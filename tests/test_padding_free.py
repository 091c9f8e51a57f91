"""Windows run without padding to their longest example (issue 28): length buckets on a
CPU, packed rows on CUDA (run here on the CPU through transformers' packed-sequence
mask), with the same loss and gradient as today's stacked pass and as one pass per
micro-batch."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

import test_stacked_windows
from helpers import authors_model, two_authors
from knowundo_bench.plugins.methods import ga_gd
from knowundo_bench.train import packing
from knowundo_bench.train.context import UnlearnContext
from knowundo_bench.train.hook_types import MethodRun
from knowundo_bench.train.loop import StackedWindows
from knowundo_bench.train.packing import length_buckets, pack_rows, packed, padded_positions
from test_stacked_windows import FORGET, OBJECTIVES, RETAIN, one_by_one, stacked, window_gradient, windows

PAIRS, _, _ = two_authors()
tokenizer = test_stacked_windows.tokenizer  # the same two-author fixtures
encoder = test_stacked_windows.encoder


class CpuAccelerator:
    device = torch.device("cpu")

    @staticmethod
    def backward(loss):
        loss.backward()


def padding_free(model, objective, window, divisor, packs: bool):
    runner = StackedWindows(objective, CpuAccelerator(), None, autocast=False)
    runner.packs = packs
    return runner.backward(model, window, divisor).loss


def brute_force_cost(lengths: list[int], pass_cost: float, max_rows: int) -> float:
    """The least cost over every cut of the sorted lengths into contiguous runs."""
    ordered = sorted(lengths)
    best = float("inf")
    for cuts in itertools.product([False, True], repeat=len(ordered) - 1):
        runs, run = [], [ordered[0]]
        for length, cut in zip(ordered[1:], cuts, strict=True):
            if cut:
                runs.append(run)
                run = []
            run.append(length)
        runs.append(run)
        if max(len(r) for r in runs) <= max_rows:
            best = min(best, sum(padded_positions(r) + pass_cost for r in runs))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_length_buckets_are_the_cheapest_cut_and_hold_every_example_once(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(3, 90) for _ in range(9)]
    pass_cost, max_rows = rng.choice([0, 20, 48, 500]), rng.choice([2, 4, 9])
    plan = length_buckets(lengths, pass_cost, max_rows)
    assert sorted(i for run in plan.passes for i in run) == list(range(len(lengths)))
    assert max(len(run) for run in plan.passes) <= max_rows
    cost = sum(padded_positions([lengths[i] for i in run]) + pass_cost for run in plan.passes)
    assert cost == brute_force_cost(lengths, pass_cost, max_rows)
    assert plan.real == sum(lengths) and plan.computed >= plan.real
    assert plan.padding_fraction <= 1 - sum(lengths) / padded_positions(lengths) + 1e-12


def test_a_free_pass_runs_every_length_apart_and_a_costly_one_runs_one_pass():
    lengths = [5, 9, 5, 30, 9]
    assert len(length_buckets(lengths, pass_cost=0).passes) == 3  # one per distinct length
    assert length_buckets(lengths, pass_cost=0).padding_fraction == 0.0
    assert len(length_buckets(lengths, pass_cost=10_000).passes) == 1


def test_packed_rows_respect_the_capacity_and_restart_positions():
    lengths = [7, 3, 12, 5, 5, 1]
    rows = pack_rows(lengths, capacity=12)
    assert sorted(i for row in rows for i in row) == list(range(6))
    assert all(sum(lengths[i] for i in row) <= 12 for row in rows) and len(rows) == 3
    batch = {
        "input_ids": torch.arange(1, 13).repeat(6, 1),
        "attention_mask": (torch.arange(12) < torch.tensor(lengths)[:, None]).long(),
        "labels": torch.arange(1, 13).repeat(6, 1),
    }
    rows_batch = packed(batch, capacity=12)
    for r in range(len(rows)):
        owners = rows_batch["example"][r]
        for example in owners.unique().tolist():
            if example < 0:
                continue
            at = (owners == example).nonzero().flatten()
            assert rows_batch["position_ids"][r, at].tolist() == list(range(lengths[example]))
            assert rows_batch["input_ids"][r, at].tolist() == list(range(1, lengths[example] + 1))
            assert rows_batch["labels"][r, at[0]] == -100  # nothing in its row predicts its first token


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
@pytest.mark.parametrize("packs", [False, True], ids=["buckets", "packed"])
def test_padding_free_windows_have_the_same_loss_and_gradient(name, packs, tokenizer, encoder, monkeypatch):
    """Against one pass per micro-batch and against today's stacked pass (padded to the
    window's longest): the window's loss and every gradient to float tolerance. With a
    pass cost of 0 every distinct length runs apart, so the buckets really split."""
    monkeypatch.setattr(packing, "PASS_COST", 0)
    monkeypatch.setattr(packing, "PACKED_ROW_TOKENS", 64)  # several examples a row, several rows
    objective, kinds = OBJECTIVES[name]
    model = authors_model(tokenizer)
    for kind in kinds:
        batches = windows(encoder, kind, 2)
        window = batches[:6]
        lengths = objective.stacked_terms(window, 6.0)[0]["attention_mask"].sum(dim=1).tolist()
        assert len(set(lengths)) > 2
        loss, expected = window_gradient(model, one_by_one, objective, window, 6.0)
        stacked_loss, stacked_grads = window_gradient(model, stacked, objective, window, 6.0)
        got_loss, got = window_gradient(model, padding_free, objective, window, 6.0, packs)
        assert got_loss == pytest.approx(loss, rel=1e-5, abs=1e-6)
        assert got_loss == pytest.approx(stacked_loss, rel=1e-5, abs=1e-6)
        for a, b, c in zip(got, expected, stacked_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-6)


def train_reports(tokenizer, encoder) -> dict[bool, object]:
    reports = {}
    for stack in (True, False):
        params = ga_gd.GAGDParams(epochs=1, batch_size=2, grad_accum=4, lr=1e-3, stack_window=stack)
        reports[stack] = ga_gd.unlearn(
            method=MethodRun("ga_gd", "ga_gd", params, 0),
            model=authors_model(tokenizer),
            forget=FORGET,
            retain=RETAIN,
            context=UnlearnContext(encoder=encoder, seed=0),
        )
    return reports


def test_training_records_the_padding_it_computed(tokenizer, encoder, monkeypatch):
    """Each step's padding share, and their mean in the summary. With a free pass every
    length runs apart, so a stacked step computes no padding at all, while micro-batches
    one by one (each padded to its own longest) do."""
    reports = train_reports(tokenizer, encoder)
    for report in reports.values():
        assert len(report.step_padding_fraction) == len(report.step_seconds) > 1
        assert all(0 <= f < 1 for f in report.step_padding_fraction)
        assert report.summary()["padding_fraction"] == pytest.approx(
            sum(report.step_padding_fraction) / len(report.step_padding_fraction)
        )
    assert sum(reports[False].step_padding_fraction) > 0
    monkeypatch.setattr(packing, "PASS_COST", 0)
    free = train_reports(tokenizer, encoder)
    assert free[True].step_padding_fraction == [0.0] * len(free[True].step_seconds)
    assert free[False].step_padding_fraction == reports[False].step_padding_fraction
