"""Tests of the shared training loop, epoch batching and vanilla snapshots on a tiny Llama."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest
import torch

from helpers import tiny_llama as build_llama
from knowundo_bench.benchmark.encoding import IGNORE_INDEX, Encoded, PromptEncoder
from knowundo_bench.config.params import TrainingParams
from knowundo_bench.modeling.devices import ModelSnapshot
from knowundo_bench.train.hook_types import TrainingReport
from knowundo_bench.train.loop import make_epoch_batches, planned_steps, train
from knowundo_bench.train.losses import answer_loss

VOCAB = 64
PAD = 0


def tiny_llama(seed: int = 0):
    """A 1-layer Llama with hidden size 16 (a few thousand parameters)."""
    return build_llama(
        VOCAB,
        seed=seed,
        max_position_embeddings=32,
        pad_token_id=PAD,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )


def example(tag: int, length: int = 6, prompt_length: int = 3) -> Encoded:
    """An encoded example whose first token ``tag`` identifies it; answer = last tokens."""
    ids = tuple([tag] + [3 + (tag * 7 + i * 5) % (VOCAB - 3) for i in range(1, length)])
    return Encoded(
        input_ids=ids,
        labels=tuple([IGNORE_INDEX] * prompt_length) + ids[prompt_length:],
        prompt_length=prompt_length,
    )


@pytest.fixture
def encoder() -> PromptEncoder:
    """collate only needs a pad id, so a stand-in tokenizer keeps these tests tokenizer-free."""
    return PromptEncoder(SimpleNamespace(pad_token_id=PAD, eos_token_id=2, bos_token_id=1))


def forget_objective(model, batch):
    return answer_loss(model, batch["forget"])


def fixed_batches(batches):
    """epoch_batches callable returning the same micro-batches every epoch."""
    return lambda epoch: batches


def state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def params(**overrides) -> TrainingParams:
    base = dict(epochs=1, lr=1e-2, batch_size=2, grad_accum=1, warmup_ratio=0.0)
    base.update(overrides)
    return TrainingParams(**base)


# --------------------------------------------------------------------------------------
# make_epoch_batches
# --------------------------------------------------------------------------------------


def first_tokens(batch: dict[str, torch.Tensor]) -> list[int]:
    return batch["input_ids"][:, 0].tolist()


def test_epoch_batches_cover_forget_once_and_pair_retain_cyclically(encoder):
    """5 forget examples in batches of 2 -> sizes 2,2,1, each forget example exactly once;
    every batch gets a retain batch of the same size, drawn cyclically from 2 retain
    examples (picks alternate r, r', r, r', r)."""
    forget = [example(10 + i, length=4 + i % 3) for i in range(5)]
    retain = [example(50), example(51, length=8)]
    batches = make_epoch_batches(encoder, forget, retain, 2, random.Random(0))
    assert [b["forget"]["input_ids"].shape[0] for b in batches] == [2, 2, 1]
    seen = [tag for b in batches for tag in first_tokens(b["forget"])]
    assert sorted(seen) == [10, 11, 12, 13, 14]
    for b in batches:
        assert set(b) == {"forget", "retain"}
        assert b["retain"]["input_ids"].shape[0] == b["forget"]["input_ids"].shape[0]
    picks = [tag for b in batches for tag in first_tokens(b["retain"])]
    assert len(picks) == 5
    assert {picks[0], picks[1]} == {50, 51}
    assert picks == [picks[k % 2] for k in range(5)]


def test_epoch_batches_retain_larger_than_forget_uses_distinct_examples(encoder):
    """With retain larger than forget, no retain example repeats within the epoch."""
    forget = [example(10 + i) for i in range(4)]
    retain = [example(50 + i) for i in range(7)]
    batches = make_epoch_batches(encoder, forget, retain, 3, random.Random(1))
    picks = [tag for b in batches for tag in first_tokens(b["retain"])]
    assert len(picks) == 4
    assert len(set(picks)) == 4
    assert set(picks) <= set(range(50, 57))


def test_epoch_batches_rows_are_collated_examples(encoder):
    """Each forget row is the collated form of one input example (labels travel with ids)."""
    forget = [example(10, length=4), example(11, length=7)]
    batches = make_epoch_batches(encoder, forget, None, 2, random.Random(0))
    assert len(batches) == 1
    batch = batches[0]["forget"]
    by_tag = {e.input_ids[0]: e for e in forget}
    for row in range(2):
        original = by_tag[batch["input_ids"][row, 0].item()]
        n = len(original.input_ids)
        assert batch["input_ids"][row, :n].tolist() == list(original.input_ids)
        assert batch["labels"][row, :n].tolist() == list(original.labels)
        assert batch["attention_mask"][row].sum().item() == n


@pytest.mark.parametrize("retain", [None, []])
def test_epoch_batches_without_retain_have_no_retain_key(encoder, retain):
    """No (or empty) retain set -> batches hold only "forget"."""
    forget = [example(10 + i) for i in range(3)]
    batches = make_epoch_batches(encoder, forget, retain, 2, random.Random(0))
    assert len(batches) == 2
    assert all(set(b) == {"forget"} for b in batches)


def test_epoch_batches_deterministic_for_same_seed(encoder):
    """The same rng seed gives identical batches (tensor for tensor)."""
    forget = [example(10 + i, length=4 + i % 4) for i in range(9)]
    retain = [example(50 + i, length=5 + i % 2) for i in range(4)]
    a = make_epoch_batches(encoder, forget, retain, 2, random.Random(123))
    b = make_epoch_batches(encoder, forget, retain, 2, random.Random(123))
    assert len(a) == len(b) == 5
    for x, y in zip(a, b, strict=True):
        assert set(x) == set(y)
        for part in x:
            for key in x[part]:
                assert torch.equal(x[part][key], y[part][key])


def test_epoch_batches_do_not_mutate_inputs(encoder):
    """The caller's forget and retain lists keep their order (shuffling works on copies)."""
    forget = [example(10 + i) for i in range(6)]
    retain = [example(50 + i) for i in range(3)]
    forget_copy, retain_copy = list(forget), list(retain)
    make_epoch_batches(encoder, forget, retain, 2, random.Random(0))
    assert forget == forget_copy and retain == retain_copy


# --------------------------------------------------------------------------------------
# step counts
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_micro", "grad_accum", "epochs", "max_steps", "expected"),
    [
        (5, 2, 3, None, 9),  # ceil(5/2)=3 per epoch, 3 epochs
        (4, 2, 2, None, 4),  # exact windows
        (3, 1, 2, None, 6),
        (5, 2, 3, 4, 4),  # max_steps caps mid-epoch
        (2, 4, 2, None, 2),  # grad_accum larger than an epoch: one short window per epoch
    ],
)
def test_optimizer_steps_count(encoder, n_micro, grad_accum, epochs, max_steps, expected):
    """len(step_seconds) == ceil(micro/grad_accum) * epochs, capped by max_steps,
    and planned_steps predicts the same number from the forget-set size."""
    forget = [example(10 + i) for i in range(2 * n_micro)]  # batch_size 2 -> n_micro batches
    p = params(epochs=epochs, grad_accum=grad_accum, max_steps=max_steps, lr=1e-4)
    calls = []

    def epoch_batches(epoch):
        calls.append(epoch)
        return make_epoch_batches(encoder, forget, None, p.batch_size, random.Random(epoch))

    report = train(tiny_llama(), objective=forget_objective, params=p, epoch_batches=epoch_batches, seed=0)
    assert len(report.step_seconds) == expected
    assert len(report.step_losses) == expected
    assert len(report.step_peak_mem_gb) == expected
    assert planned_steps(len(forget), p) == expected
    assert all(math.isfinite(loss) for loss in report.step_losses)
    per_epoch = math.ceil(n_micro / grad_accum)
    assert report.epochs_run == math.ceil(expected / per_epoch)
    assert calls == list(range(report.epochs_run))  # one call per epoch run


def test_planned_steps_with_partial_batches():
    """7 examples, batch 2 -> 4 micro-batches; grad_accum 3 -> 2 steps/epoch; x3 epochs = 6."""
    assert planned_steps(7, TrainingParams(batch_size=2, grad_accum=3, epochs=3)) == 6
    assert planned_steps(7, TrainingParams(batch_size=2, grad_accum=3, epochs=3, max_steps=5)) == 5
    assert planned_steps(7, TrainingParams(batch_size=2, grad_accum=3, epochs=3, max_steps=50)) == 6
    # the paper's defaults: batch 1, grad_accum 16, 2 epochs
    assert planned_steps(40, TrainingParams()) == 2 * 3


def test_after_epoch_stops_early(encoder):
    """after_epoch returning True after epoch 0 stops training after one epoch."""
    forget = [example(10 + i) for i in range(6)]
    batches = make_epoch_batches(encoder, forget, None, 2, random.Random(0))
    seen = []

    def after_epoch(epoch):
        seen.append(epoch)
        return True

    report = train(
        tiny_llama(),
        objective=forget_objective,
        params=params(epochs=5, grad_accum=2),
        epoch_batches=fixed_batches(batches),
        seed=0,
        after_epoch=after_epoch,
    )
    assert seen == [0]
    assert report.epochs_run == 1
    assert len(report.step_seconds) == 2  # ceil(3 / 2)


# --------------------------------------------------------------------------------------
# trainable restriction
# --------------------------------------------------------------------------------------

SELECTED = {"model.layers.0.mlp.down_proj.weight", "model.layers.0.self_attn.q_proj.weight"}


def test_trainable_subset_leaves_others_bit_identical(encoder):
    """Only the selected tensors change; all others are bit-identical; flags restored."""
    model = tiny_llama()
    names = {n for n, _ in model.named_parameters()}
    assert SELECTED < names
    before = state(model)
    batches = make_epoch_batches(encoder, [example(10 + i) for i in range(4)], None, 2, random.Random(0))
    report = train(
        model,
        objective=forget_objective,
        params=params(epochs=2),
        epoch_batches=fixed_batches(batches),
        seed=0,
        trainable=set(SELECTED),
    )
    assert len(report.step_seconds) == 4
    after = dict(model.named_parameters())
    for name in names:
        if name in SELECTED:
            assert not torch.equal(after[name], before[name]), name
        else:
            assert torch.equal(after[name], before[name]), name
    assert all(p.requires_grad for p in model.parameters())
    assert report.trainable_tensors == 2
    assert report.trainable_parameters == sum(after[n].numel() for n in SELECTED)


def test_frozen_tensors_get_no_gradient_and_trained_ones_match_a_full_backward(encoder, monkeypatch):
    """With a selection, autograd computes and keeps gradients for the selected tensors
    only (no weight gradients or buffers for the others; AdamW holds the selected only),
    and their update is bit-identical to a step whose backward ran through every tensor."""
    batches = make_epoch_batches(encoder, [example(10 + i) for i in range(2)], None, 2, random.Random(0))
    model, reference = tiny_llama(), tiny_llama()
    accumulated: list[str] = []
    for name, p in model.named_parameters():
        p.register_post_accumulate_grad_hook(lambda p, name=name: accumulated.append(name))
    optimized: list[torch.nn.Parameter] = []

    class SpyAdamW(torch.optim.AdamW):
        def __init__(self, groups, **kwargs):
            super().__init__(groups, **kwargs)
            optimized.extend(p for g in self.param_groups for p in g["params"])

    monkeypatch.setattr(torch.optim, "AdamW", SpyAdamW)
    train(
        model,
        objective=forget_objective,
        params=params(),
        epoch_batches=fixed_batches(batches),
        seed=0,
        trainable=set(SELECTED),
    )
    assert sorted(accumulated) == sorted(SELECTED)
    by_id = {id(p): n for n, p in model.named_parameters()}
    assert sorted(by_id[id(p)] for p in optimized) == sorted(SELECTED)
    assert all(p.grad is None for p in model.parameters())
    monkeypatch.undo()
    # the reference: everything requires grad, the optimizer steps the selected tensors only
    forget_objective(reference, batches[0]).backward()
    chosen = [p for n, p in reference.named_parameters() if n in SELECTED]
    torch.nn.utils.clip_grad_norm_(chosen, 1.0)
    torch.optim.AdamW(chosen, lr=1e-2, weight_decay=0.0).step()
    for (name, a), b in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert torch.equal(a, b), name


def test_trainable_none_trains_all_but_pre_frozen(encoder):
    """trainable=None updates every trainable tensor; one frozen beforehand stays frozen and unchanged."""
    model = tiny_llama()
    model.model.norm.weight.requires_grad_(False)
    before = state(model)
    batches = make_epoch_batches(encoder, [example(10 + i) for i in range(4)], None, 2, random.Random(0))
    report = train(model, objective=forget_objective, params=params(), epoch_batches=fixed_batches(batches), seed=0)
    after = dict(model.named_parameters())
    assert not after["model.norm.weight"].requires_grad
    assert torch.equal(after["model.norm.weight"], before["model.norm.weight"])
    changed = {n for n in after if not torch.equal(after[n], before[n])}
    assert changed == set(after) - {"model.norm.weight"}
    assert report.trainable_tensors == len(after) - 1


def test_unknown_trainable_name_is_rejected():
    """A selection naming a parameter that does not exist raises ValueError, model untouched."""
    model = tiny_llama()
    with pytest.raises(ValueError, match="unknown or frozen"):
        train(
            model,
            objective=forget_objective,
            params=params(),
            epoch_batches=fixed_batches([]),
            seed=0,
            trainable={"model.no_such.weight"},
        )
    assert all(p.requires_grad for p in model.parameters())


def test_requires_grad_restored_when_objective_raises(encoder):
    """Frozen flags are undone even when training fails mid-way."""
    model = tiny_llama()
    batches = make_epoch_batches(encoder, [example(10), example(11)], None, 2, random.Random(0))

    def broken(model, batch):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        train(
            model,
            objective=broken,
            params=params(),
            epoch_batches=fixed_batches(batches),
            seed=0,
            trainable=set(SELECTED),
        )
    assert all(p.requires_grad for p in model.parameters())


def test_empty_selection_raises_and_restores_flags():
    """An empty selection raises ValueError and leaves requires_grad as it was."""
    model = tiny_llama()
    with pytest.raises(ValueError, match="nothing to train"):
        train(
            model, objective=forget_objective, params=params(), epoch_batches=fixed_batches([]), seed=0, trainable=set()
        )
    assert all(p.requires_grad for p in model.parameters())


# --------------------------------------------------------------------------------------
# gradient accumulation
# --------------------------------------------------------------------------------------


def test_grad_accum_matches_full_batch_gradient(encoder, monkeypatch):
    """One step of batch 4 x accum 1 and of batch 2 x accum 2 both apply -lr * g, where g
    is the gradient of the mean answer loss over all 4 examples.

    AdamW's first step is lr * g / (|g| + eps), i.e. about lr * sign(g): it is blind to
    the scale of g, so it could not reveal a missing 1/len(window). The optimiser is
    therefore swapped for plain SGD (no momentum, no decay), whose update is exactly
    -lr * g. With one planned step and no warm-up the scheduler factor is 1, and
    clipping is off. The 4 examples have equal length and equal answer length (no
    padding), so the mean of two 2-example means equals the 4-example mean.
    """

    def sgd(parameters, lr, weight_decay):
        return torch.optim.SGD(parameters, lr=lr, weight_decay=weight_decay)

    monkeypatch.setattr(torch.optim, "AdamW", sgd)
    lr = 0.5
    examples = [example(10 + i, length=7, prompt_length=3) for i in range(4)]
    full = encoder.collate(examples)
    halves = [encoder.collate(examples[:2]), encoder.collate(examples[2:])]
    assert int(full["attention_mask"].sum()) == 4 * 7  # no padding

    reference = tiny_llama(seed=1)
    start = state(reference)
    loss = answer_loss(reference, full)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in reference.named_parameters()}
    expected_loss = float(loss.detach())

    deltas, losses = [], []
    for micro, accum in ([[full], 1], [halves, 2]):
        model = tiny_llama(seed=1)
        p = params(lr=lr, grad_accum=accum, max_grad_norm=None, batch_size=4 // accum)
        report = train(
            model,
            objective=lambda m, b: answer_loss(m, b["forget"]),
            params=p,
            epoch_batches=fixed_batches([{"forget": b} for b in micro]),
            seed=0,
        )
        assert len(report.step_seconds) == 1
        losses.append(report.step_losses[0])
        deltas.append({n: q.detach() - start[n] for n, q in model.named_parameters()})

    for name, grad in grads.items():
        assert grad.abs().sum() > 0, name
        for delta in deltas:
            torch.testing.assert_close(delta[name], -lr * grad, rtol=1e-4, atol=1e-6, msg=name)
    assert losses[0] == pytest.approx(expected_loss, rel=1e-5)
    assert losses[1] == pytest.approx(expected_loss, rel=1e-5)


def test_grad_clipping_bounds_the_update(encoder, monkeypatch):
    """With SGD and max_grad_norm=c, the update's global norm is at most lr * c."""

    def sgd(parameters, lr, weight_decay):
        return torch.optim.SGD(parameters, lr=lr, weight_decay=weight_decay)

    monkeypatch.setattr(torch.optim, "AdamW", sgd)
    lr, clip = 0.5, 1e-3
    model = tiny_llama(seed=2)
    start = state(model)
    batches = [{"forget": encoder.collate([example(10 + i) for i in range(4)])}]
    train(
        model,
        objective=forget_objective,
        params=params(lr=lr, max_grad_norm=clip),
        epoch_batches=fixed_batches(batches),
        seed=0,
    )
    norm = math.sqrt(sum(float(((p.detach() - start[n]) ** 2).sum()) for n, p in model.named_parameters()))
    assert 0 < norm <= lr * clip * (1 + 1e-4)


# --------------------------------------------------------------------------------------
# ModelSnapshot
# --------------------------------------------------------------------------------------


def test_snapshot_restore_is_bit_identical(encoder):
    """restore() after training brings every parameter back exactly and clears grads."""
    model = tiny_llama()
    before = state(model)
    snapshot = ModelSnapshot(model)
    batches = make_epoch_batches(encoder, [example(10 + i) for i in range(4)], None, 2, random.Random(0))
    train(model, objective=forget_objective, params=params(epochs=2), epoch_batches=fixed_batches(batches), seed=0)
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters())
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    model.model.norm.weight.requires_grad_(False)
    snapshot.restore(model)
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name
        assert p.requires_grad, name
        assert p.grad is None, name


def test_snapshot_copies_not_aliases_and_skips_frozen():
    """The snapshot holds copies (in-place edits don't leak in) of trainable tensors only."""
    model = tiny_llama()
    model.model.embed_tokens.weight.requires_grad_(False)
    snapshot = ModelSnapshot(model)
    assert "model.embed_tokens.weight" not in snapshot.tensors
    assert set(snapshot.tensors) == {n for n, p in model.named_parameters() if p.requires_grad}
    original = model.lm_head.weight.detach().clone()
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)
        model.model.embed_tokens.weight.add_(1.0)
    edited_embedding = model.model.embed_tokens.weight.detach().clone()
    assert torch.equal(snapshot.tensors["lm_head.weight"], original)
    snapshot.restore(model)
    assert torch.equal(model.lm_head.weight, original)
    # a tensor that was frozen at snapshot time is left as it is
    assert torch.equal(model.model.embed_tokens.weight, edited_embedding)
    assert not model.model.embed_tokens.weight.requires_grad


# --------------------------------------------------------------------------------------
# TrainingReport.summary
# --------------------------------------------------------------------------------------


def test_summary_of_hand_made_report():
    """The warm-up step is left out of the medians and reported apart; tokens/s over the
    measured steps; MFU = flops per token x tokens/s / peak."""
    report = TrainingReport(
        step_seconds=[9.0, 1.0, 3.0, 2.0],
        step_peak_mem_gb=[4.0, 0.5, 1.5, 1.0],
        step_tokens=[100, 100, 200, 300],
        step_losses=[5.0, 4.0, 3.0, 2.5],
        epochs_run=2,
        trainable_tensors=5,
        trainable_parameters=100,
        flops_per_token=600.0,
        warmup_steps=1,
    )
    summary = report.summary(peak_flops=1e6)
    assert summary["steps"] == 4 and summary["measured_steps"] == 3
    assert summary["sec_per_step"] == 2.0 and summary["sec_per_step_p90"] == 3.0
    assert summary["warmup_sec_per_step"] == [9.0]
    assert summary["peak_mem_gb"] == 1.5  # the warm-up step's 4.0 is not a training step's peak
    assert summary["tokens_per_sec"] == 600 / 6.0
    assert summary["mfu"] == pytest.approx(600.0 * 100 / 1e6)
    assert summary["final_loss"] == 2.5
    assert summary["epochs_run"] == 2
    assert summary["trainable_tensors"] == 5
    assert summary["trainable_parameters"] == 100
    assert summary["memory_kind"] == "cpu_peak_rss_growth"
    assert report.summary()["mfu"] is None  # no peak known (CPU)


def test_summary_with_no_step_after_warmup_uses_the_warmup_step():
    summary = TrainingReport(step_seconds=[2.0], step_peak_mem_gb=[1.0], step_tokens=[10]).summary()
    assert summary["measured_steps"] == 1 and summary["sec_per_step"] == 2.0 and summary["warmup_sec_per_step"] == []


def test_summary_of_empty_report():
    """No steps -> None for the per-step figures instead of an error."""
    summary = TrainingReport().summary()
    assert summary["steps"] == 0
    assert summary["sec_per_step"] is None
    assert summary["peak_mem_gb"] is None
    assert summary["tokens_per_sec"] is None
    assert summary["final_loss"] is None


def test_summary_of_real_cpu_run(encoder):
    """A CPU run: positive step times, peak-RSS growth per step, tokens per step from
    the attention masks, 6N FLOPs per token when every parameter trains."""
    batches = make_epoch_batches(encoder, [example(10 + i) for i in range(6)], None, 2, random.Random(0))
    model = tiny_llama()
    report = train(model, objective=forget_objective, params=params(), epoch_batches=fixed_batches(batches), seed=0)
    summary = report.summary()
    assert summary["steps"] == 3 and summary["measured_steps"] == 2
    assert summary["sec_per_step"] > 0 and len(summary["warmup_sec_per_step"]) == 1
    assert summary["sec_per_step"] == pytest.approx(sum(report.step_seconds[1:]) / 2)  # median of two
    assert summary["memory_kind"] == "cpu_peak_rss_growth"
    assert all(0 <= gb < 2 for gb in report.step_peak_mem_gb)  # growth within a step, in GB
    assert report.step_tokens == [int(b["forget"]["attention_mask"].sum()) for b in batches]
    assert summary["tokens_per_sec"] == pytest.approx(sum(report.step_tokens[1:]) / sum(report.step_seconds[1:]))
    n = sum(p.numel() for p in model.parameters())
    assert report.flops_per_token == 6 * n and summary["model_parameters"] == n
    assert summary["final_loss"] == report.step_losses[-1]


def test_frozen_parameters_count_4n_flops_per_token(encoder):
    batches = make_epoch_batches(encoder, [example(10 + i) for i in range(4)], None, 2, random.Random(0))
    model = tiny_llama()
    some = {name for name, _ in list(model.named_parameters())[:3]}
    report = train(
        model, objective=forget_objective, params=params(), epoch_batches=fixed_batches(batches), seed=0, trainable=some
    )
    assert report.flops_per_token == 4 * sum(p.numel() for p in model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA path: needs a GPU")
def test_cuda_events_time_each_step_and_memory_is_the_allocator_peak(encoder):
    batches = make_epoch_batches(encoder, [example(10 + i) for i in range(8)], None, 2, random.Random(0))
    model = tiny_llama().cuda()
    report = train(model, objective=forget_objective, params=params(), epoch_batches=fixed_batches(batches), seed=0)
    assert report.memory_kind == "cuda_max_allocated" and report.device != "cpu"
    assert len(report.step_seconds) == 4 and all(s > 0 for s in report.step_seconds)
    assert all(gb > 0 for gb in report.step_peak_mem_gb)
    assert report.summary(peak_flops=1e12)["mfu"] > 0


def test_each_step_records_the_learning_rate_it_used(encoder):
    """``step_lr`` is HF's cosine schedule with warm-up (the official recipe), read before
    each step: the first warm-up step uses a rate of 0, the peak is ``lr``."""
    from transformers import get_cosine_schedule_with_warmup

    forget = [example(10 + i) for i in range(10)]
    p = params(epochs=3, grad_accum=2, lr=1e-3, warmup_ratio=0.25)
    report = train(
        tiny_llama(),
        objective=forget_objective,
        params=p,
        epoch_batches=lambda epoch: make_epoch_batches(encoder, forget, None, p.batch_size, random.Random(epoch)),
        seed=0,
    )
    total = len(report.step_seconds)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=p.lr)
    schedule = get_cosine_schedule_with_warmup(optimizer, math.ceil(0.25 * total), total)
    expected = []
    for _ in range(total):
        expected.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    assert report.step_lr == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert report.step_lr[0] == 0.0 and max(report.step_lr) == pytest.approx(p.lr)
