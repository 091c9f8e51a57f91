"""The official protocol, transcribed independently of the harness and compared numerically.

Each test writes the authors' code (github zjunlp/KnowUnDo) out again in plain torch and
checks the harness against it on a tiny model; docs/fidelity.md names the files. Each
fails if the harness reverts to its earlier reading (noted per test).
"""

from __future__ import annotations

import math
import random

import pytest
import torch
import transformers

from helpers import authors_model, authors_tokenizer, two_authors
from knowundo_bench.benchmark.encoding import IGNORE_INDEX, PromptEncoder
from knowundo_bench.benchmark.pairs import QAPair, RetainText
from knowundo_bench.config.params import TrainingParams
from knowundo_bench.evaluate.scopes import teacher_forced
from knowundo_bench.plugins.localizers.memflex import (
    MemFlexLocalizerParams,
    average_gradients,
    corrupted_copy,
)
from knowundo_bench.plugins.methods import ga_gd, ga_kl, memflex
from knowundo_bench.plugins.methods.random_labels import randomly_labelled
from knowundo_bench.train.context import UnlearnContext
from knowundo_bench.train.hook_types import MethodRun
from knowundo_bench.train.labels import allowed_tokens
from knowundo_bench.train.loop import _lr_lambda, make_mixed_batches, mixed_dataset, warmup_steps_for

PAIRS, FORGET, RETAIN = two_authors()


@pytest.fixture(scope="module")
def tokenizer():
    return authors_tokenizer(PAIRS)


@pytest.fixture
def raw(tokenizer) -> PromptEncoder:
    return PromptEncoder(tokenizer, 96, prompt_format="raw")


@pytest.fixture
def model(tokenizer):
    return authors_model(tokenizer)


def official_tokenize(tokenizer, question: str, answer: str) -> tuple[list[int], list[int]]:
    """``llm_tokenize_with_chunk.tokenize`` on ``{"text": q + "\\n\\n" + a, "labels": "\\n\\n" + a}``
    (the tokenizer's own special tokens; labels masked up to ``pre_len``; no EOS)."""
    text = "\n\n".join([question, answer])
    input_ids = tokenizer(text)["input_ids"]
    pre_len = len(tokenizer(text.replace("\n\n" + answer, ""))["input_ids"])
    labels = [IGNORE_INDEX] * pre_len + input_ids[pre_len:]
    return input_ids, labels


def official_example_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``AscentPlusDescentTrainer.compute_loss`` before the factors: per-example mean CE."""
    shift_logits, shift_labels = logits[..., :-1, :], labels[..., 1:]
    loss = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1), reduction="none"
    )
    valid = (shift_labels != IGNORE_INDEX).sum(dim=-1).float()
    return loss.view(shift_logits.size(0), -1).sum(dim=-1) / valid


def test_raw_prompt_format_is_the_official_tokenisation(tokenizer, raw):
    """Fails with the earlier chat/"Question: ... Answer:" prompt or an EOS in unlearning data."""
    for pair in FORGET + RETAIN:
        input_ids, labels = official_tokenize(tokenizer, pair.question, pair.answer)
        encoded = raw.encode(pair, with_eos=raw.unlearning_eos)
        assert list(encoded.input_ids) == input_ids
        assert list(encoded.labels) == labels
    assert not raw.unlearning_eos
    prefixed = raw.with_prefix(system_prompt="You are a privacy-sensitive assistant.")
    encoded = prefixed.encode(FORGET[0], with_eos=False)
    input_ids, labels = official_tokenize(
        tokenizer, "You are a privacy-sensitive assistant.\n" + FORGET[0].question, FORGET[0].answer
    )
    assert (list(encoded.input_ids), list(encoded.labels)) == (input_ids, labels)  # the official direct_prompts


def test_random_labels_are_the_official_completely_random_targets(tokenizer, raw):
    """``completely_random``: real inputs, a random target wherever the input token is not
    special (prompt included), special/pad targets dropped. Fails with the earlier reading
    (random tokens in inputs and labels, answer only)."""
    special = {tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id}
    examples = [raw.encode(p, with_eos=False) for p in FORGET]
    labelled = randomly_labelled(examples, allowed_tokens(tokenizer), set(tokenizer.all_special_ids), seed=0)
    for example, ours in zip(examples, labelled, strict=True):
        official_positions = [i for i, t in enumerate(example.input_ids) if t not in special]
        assert ours.input_ids == example.input_ids
        # position 0 (BOS) has no target after the shift in either version
        assert [i for i, label in enumerate(ours.labels) if label != IGNORE_INDEX][0:] == official_positions
        assert any(i < example.prompt_length for i in official_positions)  # the prompt is targeted too


def test_mixed_batching_has_the_official_dataset_steps_and_loss(tokenizer, raw, model):
    """``AdvSupervisedDataset`` + ``AscentPlusDescentTrainer``: forget i then retain i, shuffled
    once; an epoch of N forget examples has ceil(2N / (bs x accum)) steps; the micro-batch
    loss is mean(factor x per-example CE). Fails with the earlier paired batching (N steps
    of a doubled gradient)."""
    forget = raw.encode_all(FORGET, with_eos=False)
    retain = raw.encode_all(RETAIN, with_eos=False)
    items = mixed_dataset(forget, retain, 1, random.Random(0))
    assert sorted(map(id, (e for k, e in items if k == "forget"))) == sorted(map(id, forget))
    assert [e for k, e in items if k == "retain"] != []
    assert sorted(map(id, (e for k, e in items if k == "retain"))) == sorted(map(id, retain[: len(forget)]))

    context = UnlearnContext(encoder=raw, seed=0)
    params = ga_gd.GAGDParams(epochs=1, batch_size=1, grad_accum=4, lr=1e-4)
    report = ga_gd.unlearn(
        method=MethodRun("ga_gd", "ga_gd", params, 0), model=model, forget=FORGET, retain=RETAIN, context=context
    )
    n = len(FORGET)
    assert len(RETAIN) >= n and len(report.step_seconds) == math.ceil(2 * n / 4)

    mixed_parts = 0
    for weights in ((-1.0, 1.0), (-0.4, 2.0)):  # GA+GD; MemFlex's factors
        objective = ga_gd.weighted_objective(*weights)
        for batch in make_mixed_batches(raw, items[:12], 4):
            mixed_parts += len(batch) == 2
            official_terms = []
            for kind, part in batch.items():
                factor = weights[0] if kind == "forget" else weights[1]
                logits = model(input_ids=part["input_ids"], attention_mask=part["attention_mask"]).logits
                official_terms += (official_example_loss(logits, part["labels"]) * factor).tolist()
            official = sum(official_terms) / len(official_terms)
            assert objective(model, batch).item() == pytest.approx(official, rel=1e-5, abs=1e-6)
    assert mixed_parts  # some micro-batches hold forget and retain examples together
    assert memflex.MemFlexParams().forget_weight == -0.4 and memflex.MemFlexParams().retain_weight == 2.0


def test_localizer_gradient_equals_the_official_batch_one_loop(tokenizer, raw):
    """``localization.compute_info``: batch 1, HF loss, eval mode, gradients summed and
    divided by the number of corrupted copies. The harness runs 16 copies to a forward
    pass. Fails with the earlier reading (token-mean over batches, train mode, 100% of
    the answer replaced)."""
    model = authors_model(tokenizer, attention_dropout=0.5)  # train mode would make the gradients random
    names = [n for n, _ in model.named_parameters()]
    examples = raw.encode_all(FORGET, with_eos=True)
    allowed = allowed_tokens(tokenizer)
    params = MemFlexLocalizerParams(n_passes=3, batch_size=16, mu=0.9, sigma=0.0)
    model.eval()
    ours = average_gradients(model, raw, examples, names, params, allowed, torch.Generator().manual_seed(7))

    generator = torch.Generator().manual_seed(7)  # the same draws, in the same order
    copies = [corrupted_copy(e, allowed, tokenizer.eos_token_id, generator) for _ in range(3) for e in examples]
    official = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for copy in copies:
        model.zero_grad()
        loss = model(input_ids=torch.tensor([copy.input_ids]), labels=torch.tensor([copy.labels])).loss
        loss.backward()
        for n, p in model.named_parameters():
            official[n] += p.grad
    model.zero_grad()
    for n in names:
        official[n] /= len(copies)
        assert torch.allclose(ours[n], official[n], atol=1e-5, rtol=1e-4), n
    changed = sum(
        a != b for c, e in zip(copies, examples * 3, strict=True) for a, b in zip(c.input_ids, e.input_ids, strict=True)
    )
    answer = sum(len(e.input_ids) - e.prompt_length - 1 for e in examples) * 3
    assert 0.2 < changed / answer < 0.5  # about 40% of the answer, not all of it


def test_ga_kl_averages_over_every_position_of_the_retain_example(tokenizer, raw, model):
    """``compute_kl``: -(P_ref log P_theta) summed over the vocabulary, averaged over all
    positions; with no padding it is KL(P_ref || P_theta) plus the reference entropy, a
    constant, so values differ by the entropy and gradients agree. Fails with the answer-
    only reading or the swapped direction."""
    reference = ga_kl.frozen_copy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))  # far enough for the two KL directions to differ
    example = raw.encode(RETAIN[0], with_eos=False)
    batch = raw.collate([example])
    logits_q = model(input_ids=batch["input_ids"]).logits
    with torch.no_grad():
        prob_p = torch.softmax(reference(input_ids=batch["input_ids"]).logits, -1)
    official = -(prob_p * torch.log(torch.softmax(logits_q, -1) + 1e-12)).sum(-1).mean()
    entropy = -(prob_p * torch.log(prob_p)).sum(-1).mean()
    ours = ga_kl.retain_kl(model, reference, batch)
    assert ours.item() == pytest.approx((official - entropy).item(), rel=1e-4)
    answer_only = ga_kl.retain_kl(model, reference, batch, positions="answer")
    assert abs(answer_only.item() - ours.item()) > 1e-4
    grad_ours = torch.autograd.grad(ours, model.model.embed_tokens.weight, retain_graph=True)[0]
    grad_official = torch.autograd.grad(official, model.model.embed_tokens.weight)[0]
    assert (grad_ours - grad_official).abs().max() < 1e-4 * grad_official.abs().max(), (
        (grad_ours - grad_official).abs().max()
    )
    log_q = torch.log_softmax(model(input_ids=batch["input_ids"]).logits, -1)
    swapped = (log_q.exp() * (log_q - prob_p.log())).sum(-1).mean()
    assert abs(swapped.item() - ours.item()) > 1e-2 * ours.item()


def test_perplexity_is_exp_of_the_mean_per_example_nll(tokenizer, raw, model):
    """``compute_min_k_ppl_acc`` (ratio 1): exp(-mean over examples of each one's mean
    answer log-prob). Fails with the earlier token-pooled reading."""
    pairs = FORGET[:3] + [
        QAPair(
            question=FORGET[0].question,
            answer=FORGET[0].answer + " " + RETAIN[0].answer * 3,
            scope="unlearn",
            split="val",
        )
    ]
    examples = raw.encode_all(pairs, with_eos=False)
    with torch.no_grad():
        model.lm_head.weight.mul_(30)  # peaked predictions: examples' NLLs differ widely
    means = []
    with torch.no_grad():
        for e in examples:
            logits = model(input_ids=torch.tensor([e.input_ids])).logits
            log_probs = torch.log_softmax(logits[0, :-1], -1)
            labels = torch.tensor(e.labels[1:])
            mask = labels != IGNORE_INDEX
            means.append(log_probs[mask].gather(-1, labels[mask].unsqueeze(-1)).mean().item())
    official = math.exp(-sum(means) / len(means))
    accuracy, ppl, ppl_token = teacher_forced(model.eval(), raw, examples, batch_size=3)
    assert ppl == pytest.approx(official, rel=1e-5)
    assert abs(ppl_token - official) / official > 1e-3  # the two readings differ on unequal lengths


def test_schedule_is_hf_cosine_with_warmup_ratio():
    """``--lr_scheduler_type cosine --warmup_ratio 0.03``: HF's schedule, warm-up
    ceil(0.03 x steps) from 0. Fails with the earlier (step+1)/(warmup+1) warm-up or a
    floor."""
    assert TrainingParams().warmup_ratio == 0.03
    for total in (1, 7, 50, 100):
        warmup = warmup_steps_for(total, 0.03)
        assert warmup == math.ceil(0.03 * total)
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        hf = transformers.get_cosine_schedule_with_warmup(optimizer, warmup, total)
        ours = _lr_lambda(total, warmup)
        for step in range(total):
            assert ours(step) == pytest.approx(hf.lr_lambdas[0](step), abs=1e-12), (total, step)


def test_ood_text_in_raw_format_has_no_eos(tokenizer, raw):
    """The official OOD rows are plain text, every token labelled, no EOS appended."""
    text = "A general passage about rivers."
    encoded = raw.encode_all([RetainText(text=text)], with_eos=raw.unlearning_eos)[0]
    assert list(encoded.input_ids) == tokenizer(text)["input_ids"]  # no EOS, no BOS the tokenizer does not add
    assert list(encoded.labels[1:]) == list(encoded.input_ids[1:])


PAPER_METHODS = ["ga", "random_labels", "adversarial", "ga_gd", "ga_gd_ood", "ga_kl", "ga_kl_ood", "memflex"]


@pytest.mark.parametrize(
    "name",
    ["paper-privacy-llama2", "paper-copyright-llama2", "paper-privacy-tiny", "paper-copyright-tiny", "smollm2-privacy"],
)
def test_paper_specs_use_the_official_protocol(name):
    """Every spec that reproduces the paper: raw prompts, the eight methods, Table 7 and
    12 defaults where the scale allows, the official OOD corpus where the hub is used."""

    from conftest import SPECS_DIR
    from knowundo_bench.plugin.manager import get_plugins
    from knowundo_bench.run.resolution import load_spec

    resolved = load_spec(SPECS_DIR / f"{name}.yaml", get_plugins())
    spec = resolved.spec
    assert spec.model.prompt_format == "raw"
    assert [m.info.name for m in resolved.methods][:8] == PAPER_METHODS
    if spec.data.source == "hub":
        ood = resolved.ood_params
        assert (spec.ood_retain.source, ood.repo, ood.name, ood.split, ood.column) == (
            "hub_text",
            "llmunlearn/unlearn_dataset",
            "general",
            "retain",
            "text",
        )
        for method in resolved.methods:  # Table 7: 2 epochs, batch 1 x 16, lr 5e-5 (MemFlex 3e-4), wd 0
            p = method.params
            assert (p.epochs, p.batch_size, p.grad_accum, p.weight_decay, p.warmup_ratio) == (2, 1, 16, 0.0, 0.03)
            assert p.lr == (3e-4 if method.info.name == "memflex" else 5e-5)
            if method.localizer is not None:
                assert (method.localizer.params.mu, method.localizer.params.sigma) == ("auto", "auto")
            if hasattr(p, "retain_batching"):
                assert (p.retain_batching, p.retain_ratio) == ("mixed", 1)


def test_ga_kl_mixed_micro_batch_adds_its_terms_as_the_official_trainer(tokenizer, raw, model):
    """``AscentPlusKLDivergenceTrainer.compute_loss`` on a micro-batch of 3 forget rows and
    1 retain row: -(HF token-mean CE of the forget rows) + KL-type term of the retain row,
    added without shares. Fails with GA+GD's share weighting."""
    reference = ga_kl.frozen_copy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    forget = raw.encode_all(FORGET[:3], with_eos=False)
    retain = raw.encode(RETAIN[0], with_eos=False)
    batch = make_mixed_batches(raw, [("forget", f) for f in forget] + [("retain", retain)], 4)[0]
    ours = ga_kl.ga_kl_objective(reference, -1.0, 1.0)(model, batch)
    part = batch["forget"]
    negative = model(input_ids=part["input_ids"], attention_mask=part["attention_mask"], labels=part["labels"]).loss
    ids = torch.tensor([retain.input_ids])
    with torch.no_grad():
        prob_p = torch.softmax(reference(input_ids=ids).logits, -1)
    cross_entropy = -(prob_p * torch.log(torch.softmax(model(input_ids=ids).logits, -1) + 1e-12)).sum(-1).mean()
    entropy = -(prob_p * torch.log(prob_p)).sum(-1).mean()
    official = -negative + cross_entropy  # the factor of the retain rows is 1
    assert ours.item() == pytest.approx((official - entropy).item(), rel=1e-4, abs=1e-5)


def test_raw_sequences_keep_their_first_max_length_tokens(tokenizer):
    """``chunk_and_pad`` keeps the first 256 tokens; a too-long prompt loses its end, not
    its beginning (BOS and any prefix stay)."""
    short = PromptEncoder(tokenizer, 12, prompt_format="raw")
    pair = QAPair(question=" ".join([FORGET[0].question] * 3), answer=FORGET[0].answer, scope="unlearn", split="train")
    input_ids, _ = official_tokenize(tokenizer, pair.question, pair.answer)
    encoded = short.encode(pair, with_eos=False)
    assert list(encoded.input_ids) == input_ids[:12]
    assert set(encoded.labels) == {IGNORE_INDEX}  # the answer did not fit
