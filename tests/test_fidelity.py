"""The official protocol, transcribed independently of the harness and compared numerically.

Each test writes the authors' code (github zjunlp/KnowUnDo) out again in plain torch and
checks the harness against it on a tiny model; docs/fidelity.md names the files. Each
fails if the harness reverts to its earlier reading (noted per test).
"""

from __future__ import annotations

import collections
import math
import random
from types import SimpleNamespace

import numpy
import pytest
import torch
import transformers

from helpers import authors_model, authors_tokenizer, sentencepiece_tokenizer, two_authors
from knowundo_bench.benchmark.encoding import IGNORE_INDEX, Encoded, PromptEncoder
from knowundo_bench.benchmark.pairs import QAPair, RetainText
from knowundo_bench.config.params import TrainingParams
from knowundo_bench.evaluate.scopes import teacher_forced
from knowundo_bench.plugins.localizers import memflex as memflex_localizer
from knowundo_bench.plugins.localizers.memflex import MemFlexLocalizerParams, corrupted_copy, scope_gradients
from knowundo_bench.plugins.methods import ga_gd, ga_kl, memflex, random_labels
from knowundo_bench.plugins.methods.random_labels import RandomLabelsParams, randomly_labelled
from knowundo_bench.train.context import UnlearnContext
from knowundo_bench.train.hook_types import LocalizerRun, MethodRun
from knowundo_bench.train.labels import allowed_tokens
from knowundo_bench.train.loop import _lr_lambda, make_mixed_batches, mixed_dataset, warmup_steps_for

PAIRS, FORGET, RETAIN = two_authors()


@pytest.fixture(scope="module")
def tokenizer():
    return authors_tokenizer(PAIRS)


@pytest.fixture(scope="module")
def sp_tokenizer():
    """A LLaMA-style SentencePiece tokenizer (BOS, Metaspace, byte fallback; helpers)."""
    return sentencepiece_tokenizer([t for p in PAIRS for t in (p.question, p.answer)])


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


# --- Random labels (row 4): ``utils/llm_tokenize_with_chunk.py:42-95``, completely_random ---


def official_completely_random(tokenizer, question: str, answer: str, max_length: int, np_random):
    """``tokenize(random_label=True, completely_random=True)`` on one row
    ``{"text": q + "\\n\\n" + a, "labels": "\\n\\n" + a}``: the first ``max_length`` tokens,
    right-padded with the pad id (``chunk_and_pad``); labels = inputs with the first
    ``pre_len`` set to pad (``:46-50``); then every position whose input is not
    pad/eos/bos/unk gets ``np.random.choice(tokenizer.vocab_size)`` and the others keep
    their own id (``:52-67``); finally every label equal to the pad id becomes -100
    (``:89-94``). Returns (input_ids, labels, unpadded length)."""
    text, label_text = "\n\n".join([question, answer]), "\n\n" + answer
    pad = tokenizer.pad_token_id  # EOS where the tokenizer has none (save_tokenized_dataset.py:38-39)
    input_ids = tokenizer(text)["input_ids"][:max_length]
    length = len(input_ids)
    input_ids = input_ids + [pad] * (max_length - length)
    labels = list(input_ids)
    pre_len = len(tokenizer(text.replace(label_text, ""))["input_ids"])
    labels[:pre_len] = [pad] * pre_len
    special_tokens = [pad, tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id]
    for i, token_id in enumerate(input_ids):
        labels[i] = int(np_random.choice(tokenizer.vocab_size)) if token_id not in special_tokens else token_id
    labels = [IGNORE_INDEX if label == pad else label for label in labels]
    return input_ids, labels, length


@pytest.mark.parametrize("which", ["byte_bpe", "sentencepiece"])
def test_random_labels_are_the_official_completely_random_targets(which, tokenizer, sp_tokenizer):
    """``completely_random``: the model reads the real text; every non-special position,
    prompt included, gets a label drawn uniformly from ``range(tokenizer.vocab_size)``.
    The official code keeps a special token's own id as its label (-100 only where it is
    the pad id): in the raw format the only such token is LLaMA's BOS at position 0,
    whose label HF's shift drops, so the harness's -100 there is the same loss. Fails
    with labels equal to the inputs, answer-only targets, labels from a narrower range,
    or noise in the inputs."""
    tok = tokenizer if which == "byte_bpe" else sp_tokenizer
    raw = PromptEncoder(tok, 96, prompt_format="raw")  # sets pad = EOS where missing, as the official code
    special = {tok.pad_token_id, tok.eos_token_id, tok.bos_token_id, tok.unk_token_id} - {None}
    allowed = allowed_tokens(tok)
    examples = raw.encode_all(PAIRS, with_eos=raw.unlearning_eos)
    np_random = numpy.random.RandomState(42)  # the official set_seed(42)
    ours_positions = official_positions = same_as_input = official_same = 0
    ours_all = randomly_labelled(examples, allowed, set(tok.all_special_ids), seed=0)  # as random_labels.unlearn
    for pair, example, ours in zip(PAIRS, examples, ours_all, strict=True):
        input_ids, labels, length = official_completely_random(tok, pair.question, pair.answer, 96, np_random)
        assert ours.input_ids == example.input_ids == tuple(input_ids[:length])  # real text in, no noise
        assert set(input_ids[length:]) <= {tok.pad_token_id}
        specials_at = [i for i, t in enumerate(input_ids[:length]) if t in special]
        assert specials_at == ([0] if which == "sentencepiece" else [])  # BOS only, where LLaMA adds it
        if specials_at:  # the official label is the BOS id itself, ours none: both dropped by the shift
            assert labels[0] == tok.bos_token_id and ours.labels[0] == IGNORE_INDEX
        targeted = {i for i in range(1, length) if ours.labels[i] != IGNORE_INDEX}
        official = {i for i in range(1, length) if labels[i] != IGNORE_INDEX}
        assert targeted == {i for i in range(1, length) if input_ids[i] not in special}
        assert official <= targeted  # the official code also drops a draw that hits the pad id (1 in |V|)
        assert any(i < example.prompt_length for i in targeted)  # the prompt is targeted too
        assert all(0 <= ours.labels[i] < tok.vocab_size and ours.labels[i] not in special for i in targeted)
        ours_positions += len(targeted)
        official_positions += len(official)
        same_as_input += sum(ours.labels[i] == input_ids[i] for i in targeted)
        official_same += sum(labels[i] == input_ids[i] for i in official)
    assert official_positions >= 0.98 * ours_positions
    # random, not the text: a label equals its input token about once in |V|
    assert same_as_input < 0.02 * ours_positions and official_same < 0.02 * official_positions
    pooled = collections.Counter(
        label
        for seed in range(10)
        for e in randomly_labelled(examples, allowed, set(tok.all_special_ids), seed=seed)
        for label in e.labels
        if label != IGNORE_INDEX
    )
    # uniform over the official range(vocab_size), less the special ids the official code
    # either drops (pad) or could draw with probability 3 in |V| (eos, bos, unk)
    assert set(pooled) == set(range(tok.vocab_size)) - special
    mean = sum(pooled.values()) / len(pooled)
    assert max(pooled.values()) < 2.5 * mean and min(pooled.values()) > mean / 4


def test_random_labels_are_drawn_once_from_the_method_seed_and_reused_every_epoch(tokenizer, raw):
    """The official labels are drawn once, at tokenisation, and saved; both epochs read the
    same labels (in a new order: HF's RandomSampler). Fails if targets are redrawn per
    epoch or per batch, or not from the method seed."""

    def run(method_seed: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        seen = []

        class Recording(UnlearnContext):
            def train(self, model, *, objective, params, forget, retain=None):
                def spy(m, batch):
                    part = batch["forget"]
                    for ids, labels, mask in zip(
                        part["input_ids"], part["labels"], part["attention_mask"], strict=True
                    ):
                        n = int(mask.sum())
                        seen.append((tuple(ids[:n].tolist()), tuple(labels[:n].tolist())))
                    loss = objective(m, batch)
                    # the ordinary HF cross-entropy on these targets (run_unlearn_lora.py:403-437)
                    hf = m(input_ids=part["input_ids"], attention_mask=part["attention_mask"], labels=part["labels"])
                    assert loss.item() == pytest.approx(hf.loss.item(), rel=1e-5)
                    return loss

                return super().train(model, objective=spy, params=params, forget=forget, retain=retain)

        params = RandomLabelsParams(epochs=2, batch_size=4, grad_accum=1, lr=1e-4)
        random_labels.unlearn(
            method=MethodRun("random_labels", "random_labels", params, method_seed),
            model=authors_model(tokenizer),
            forget=FORGET,
            context=Recording(encoder=raw, seed=0),
        )
        return seen

    n = len(FORGET)
    seen = run(3)
    first, second = dict(seen[:n]), dict(seen[n:])
    assert len(seen) == 2 * n and len(first) == n and first == second  # the same labels in both epochs
    assert [ids for ids, _ in seen[:n]] != [ids for ids, _ in seen[n:]]  # though read in another order
    assert run(3) == seen  # the method seed fixes them
    other = dict(run(4)[:n])
    assert other.keys() == first.keys() and all(other[ids] != first[ids] for ids in first)
    twice = randomly_labelled([raw.encode(FORGET[0], with_eos=False)] * 2, allowed_tokens(tokenizer), set(), seed=0)
    assert twice[0].labels != twice[1].labels  # each example (copy) its own draws, as per-row np.random.choice


# --- Forget/retain batching (row 6): ``utils/ascent_plus_descent_tokenizer.py:15-58`` ---


def official_adv_dataset(negative, positive, positive_ratio: int, positive_factor: float, rng: random.Random):
    """``AdvSupervisedDataset.__init__``: negative (forget) row i with factor -1, then
    positive (retain) rows ``i*ratio .. (i+1)*ratio - 1`` with ``positive_factor``; the
    rows zipped with their factors and shuffled once (``random.seed(42)`` at import,
    ``:12``; ``rng`` stands for it). Returns [(row, factor)]. (With fewer than
    N x ratio positive rows, the official factors would slip against the rows: the
    callers stay clear of that case.)"""
    rows, factors = [], []
    for i in range(len(negative)):
        rows.append(negative[i])
        factors.append(-1)
        rows.extend(positive[i * positive_ratio : (i + 1) * positive_ratio])
        factors.extend([positive_factor] * positive_ratio)
    combined = list(zip(rows, factors))  # noqa: B905 - the official zip
    rng.shuffle(combined)
    return combined


def official_micro_batches(dataset, batch_size: int):
    """``SequentialSampler`` (``methods/ascent_plus_descent.py:37-38``) under HF's
    DataLoader: consecutive chunks of the dataset, the same in every epoch."""
    return [dataset[start : start + batch_size] for start in range(0, len(dataset), batch_size)]


def factors_of(params) -> dict[str, float]:
    return {"forget": params.forget_weight, "retain": params.retain_weight}


def test_mixed_dataset_is_the_official_adv_supervised_dataset(raw):
    """Forget i then its retain i (in order, the first N x ratio only), factors -1 and
    +1, shuffled once: the harness's list is the official one, row for row. Fails with
    paired batching, retain taken out of order or from the end, or swapped factors."""
    forget = raw.encode_all(FORGET, with_eos=False)
    retain = raw.encode_all(RETAIN, with_eos=False)
    factor = factors_of(ga_gd.GAGDParams())
    assert factor == {"forget": -1.0, "retain": 1.0}  # positive_factor 1.0 (ascent_plus_descent_tokenizer.py:100-105)
    assert (ga_gd.GAGDParams().retain_batching, ga_gd.GAGDParams().retain_ratio) == ("mixed", 1)
    for n, ratio in ((len(forget), 1), (6, 2)):
        assert n * ratio < len(retain)  # some retain examples are left out
        for seed in (0, 42):
            ours = mixed_dataset(forget[:n], retain, ratio, random.Random(seed))
            official = official_adv_dataset(forget[:n], retain, ratio, 1.0, random.Random(seed))
            assert [(factor[kind], id(e)) for kind, e in ours] == [(f, id(e)) for e, f in official]
            used = {id(e) for kind, e in ours if kind == "retain"}
            assert used == {id(e) for e in retain[: n * ratio]}
        unshuffled = official_adv_dataset(forget[:n], retain, ratio, 1.0, SimpleNamespace(shuffle=lambda rows: None))
        assert [e for e, _ in unshuffled][: 1 + ratio] == [forget[0], *retain[:ratio]]  # forget 0, then its retain
        assert [(factor[kind], id(e)) for kind, e in ours] != [(f, id(e)) for e, f in unshuffled]  # shuffled


def test_mixed_dataset_is_read_in_the_same_order_every_epoch(tokenizer, raw, model):
    """``UnlearnContext.train`` with ``retain_batching: mixed`` reads the official dataset
    (shuffled once with the method seed) in consecutive micro-batches, the same every
    epoch (SequentialSampler). Fails if the order is reshuffled per epoch or the
    micro-batches are not consecutive rows."""
    seen: list[list[tuple[float, tuple[int, ...]]]] = []
    params = ga_gd.GAGDParams(epochs=3, batch_size=3, grad_accum=2, lr=1e-4)
    factor = factors_of(params)

    def recording(m, batch):
        rows = []
        for kind, part in batch.items():
            for ids, mask in zip(part["input_ids"], part["attention_mask"], strict=True):
                rows.append((factor[kind], tuple(ids[: int(mask.sum())].tolist())))
        seen.append(sorted(rows))
        return sum(p.sum() for p in m.parameters()) * 0.0

    context = UnlearnContext(encoder=raw, seed=5)
    context.train(model, objective=recording, params=params, forget=FORGET, retain=RETAIN)
    forget = raw.encode_all(FORGET, with_eos=False)
    retain = raw.encode_all(RETAIN, with_eos=False)
    dataset = official_adv_dataset(forget, retain, 1, 1.0, random.Random(context.seed))
    epoch = [sorted((f, e.input_ids) for e, f in chunk) for chunk in official_micro_batches(dataset, 3)]
    assert len(epoch) == math.ceil(2 * len(FORGET) / 3)
    assert seen == epoch * 3


def test_mixed_batching_has_the_official_steps_and_loss(tokenizer, raw, model):
    """``AscentPlusDescentTrainer``: an epoch of N forget examples has ceil(2N / (bs x
    accum)) steps; the micro-batch loss is mean(factor x per-example CE) over the
    official micro-batch. Fails with the earlier paired batching (N steps of a doubled
    gradient) or a token-pooled loss."""
    forget = raw.encode_all(FORGET, with_eos=False)
    retain = raw.encode_all(RETAIN, with_eos=False)
    context = UnlearnContext(encoder=raw, seed=0)
    params = ga_gd.GAGDParams(epochs=1, batch_size=1, grad_accum=4, lr=1e-4)
    report = ga_gd.unlearn(
        method=MethodRun("ga_gd", "ga_gd", params, 0), model=model, forget=FORGET, retain=RETAIN, context=context
    )
    n = len(FORGET)
    assert len(RETAIN) >= n and len(report.step_seconds) == math.ceil(2 * n / 4)

    ours = mixed_dataset(forget, retain, 1, random.Random(0))[:12]
    official = official_adv_dataset(forget, retain, 1, 1.0, random.Random(0))[:12]
    mixed_parts = 0
    for method, p in (("ascent_plus_descent", ga_gd.GAGDParams()), ("memflex", memflex.MemFlexParams())):
        objective = ga_gd.weighted_objective(p.forget_weight, p.retain_weight)
        for batch, chunk in zip(make_mixed_batches(raw, ours, 4), official_micro_batches(official, 4), strict=True):
            mixed_parts += len(batch) == 2
            terms = []
            for example, factor in chunk:
                if method == "memflex":  # methods/ascent_plus_descent.py:16-18
                    factor = {-1: -0.4, 1: 2.0}[factor]
                logits = model(input_ids=torch.tensor([example.input_ids])).logits
                terms.append(factor * official_example_loss(logits, torch.tensor([example.labels])).item())
            assert objective(model, batch).item() == pytest.approx(sum(terms) / len(terms), rel=1e-5, abs=1e-6)
    assert mixed_parts  # some micro-batches hold forget and retain examples together


# --- MemFlex localizer inputs (row 10): ``pretrain/data_module.py:7-40``, ``localization.py:78-106`` ---


def official_localization_copy(tokenizer, question: str, answer: str, rng: random.Random, max_length: int):
    """``convert_to_model_format_with_random_label`` with the llama2-7b tags of
    ``pretrain/config/model_config.yaml`` (empty question tags, answer tag "\\n\\n") and
    the pad id = EOS (``localization.py:131-132``); ``rng`` stands for Python's
    ``random`` (``set_seed(42)``). Returns the padded (input_ids, labels, attention)."""
    question_start_token, question_end_token, answer_token = "", "", "\n\n"
    new_question = question_start_token + question + question_end_token
    new_answer = answer_token + answer
    full_text = new_question + new_answer
    num_question_tokens = len(tokenizer.tokenize(new_question, add_special_tokens=True))
    input_ids = tokenizer(full_text, add_special_tokens=True, max_length=max_length, truncation=True)["input_ids"]
    # random replace half tokens in label
    for _ in range((len(input_ids) - num_question_tokens) // 2):
        replace_idx = rng.randint(num_question_tokens, len(input_ids) - 1)
        input_ids[replace_idx] = rng.randint(0, tokenizer.vocab_size - 1)
        # `is tokenizer.pad_token` compares an id with a string (never true): eos/unk/bos are redrawn
        while input_ids[replace_idx] in (tokenizer.eos_token_id, tokenizer.unk_token_id, tokenizer.bos_token_id):
            input_ids[replace_idx] = rng.randint(0, tokenizer.vocab_size - 1)
    pad_length = max_length - len(input_ids)
    pad_input_ids = input_ids + [tokenizer.eos_token_id] * pad_length
    pad_attention_mask = [1] * len(input_ids) + [0] * pad_length
    if len(input_ids) == max_length:
        label = input_ids
    else:
        label = input_ids + [tokenizer.eos_token_id] + [-100] * (pad_length - 1)
    for i in range(num_question_tokens):
        label[i] = -100
    return pad_input_ids, label, pad_attention_mask


def test_localizer_corruption_is_the_official_random_label_copy(tokenizer, raw):
    """The harness's ``corrupted_copy`` against the transcription, copy by copy and in
    distribution: only answer positions (the ``\\n\\n`` tag included, the prompt and the
    EOS never) change, each to a non-special id; the labels are the corrupted input plus
    an EOS label, prompt labels -100; floor(n/2) draws with replacement. Fails if the
    input stays real, the EOS label is dropped, the tag or the prompt is excluded or
    included, or the number of draws changes."""
    eos = tokenizer.eos_token_id
    allowed = allowed_tokens(tokenizer)
    official_support = set(range(tokenizer.vocab_size)) - {eos, tokenizer.unk_token_id, tokenizer.bos_token_id}
    generator, rng = torch.Generator().manual_seed(0), random.Random(0)
    changed = {"ours": [], "official": []}
    replacements = {"ours": collections.Counter(), "official": collections.Counter()}
    for pair in FORGET + RETAIN:
        ids = tokenizer(pair.question + "\n\n" + pair.answer)["input_ids"]
        nq = len(tokenizer.tokenize(pair.question, add_special_tokens=True))
        n, draws = len(ids), (len(ids) - nq) // 2
        example = raw.encode(pair, with_eos=True)  # the localizer's examples (scope_gradients)
        assert example.input_ids == tuple(ids + [eos]) and example.prompt_length == nq
        ever = {"ours": set(), "official": set()}
        for _ in range(40):
            copy = corrupted_copy(example, allowed, eos, generator)
            input_ids, labels, _ = official_localization_copy(tokenizer, pair.question, pair.answer, rng, 96)
            rows = {
                "ours": (list(copy.input_ids), list(copy.labels)),
                "official": (input_ids[: n + 1], labels[: n + 1]),
            }
            assert copy.prompt_length == nq
            for who, (x, y) in rows.items():  # the official row up to its EOS label: what the loss sees
                assert len(x) == n + 1 and x[n] == eos  # the official pads with EOS; ours appends it
                assert x[:nq] == ids[:nq]
                assert y == [IGNORE_INDEX] * nq + x[nq:n] + [eos]
                where = [i for i in range(n) if x[i] != ids[i]]
                assert len(where) <= draws
                changed[who].append(len(where))
                ever[who].update(where)
                replacements[who].update(x[i] for i in where)
        assert ever["ours"] == ever["official"] == set(range(nq, n))  # every answer position, tag included
    assert set(replacements["official"]) <= official_support
    # the official code may also draw the pad id (its pad test never matches); the harness
    # leaves it out, as for LLaMA-2, whose pad is EOS
    assert set(replacements["ours"]) == official_support - {tokenizer.pad_token_id}
    mean = {who: sum(c) / len(c) for who, c in changed.items()}
    spread = math.sqrt(sum(numpy.var(c) / len(c) for c in changed.values()))
    assert abs(mean["ours"] - mean["official"]) < 4 * spread, (mean, spread)


def test_localizer_gradient_is_the_official_compute_info(tokenizer, raw, monkeypatch):
    """``compute_info`` on the transcribed copies: batch 1, the HF loss of each padded
    row, eval mode, gradients summed and divided by the number of rows. The harness
    (``scope_gradients``) gets the same copies in place of its own draws and must give
    the same G_UL and G_RT, calling the corruption ``n_passes`` times per example of
    its own (EOS-labelled) encoding. Fails with a token-mean over batches, train mode,
    a per-chunk mean, or examples without the EOS label."""
    model = authors_model(tokenizer, attention_dropout=0.5)  # train mode would make the gradients random
    eos, passes, max_length = tokenizer.eos_token_id, 3, 96
    rng = random.Random(7)
    official_rows: dict[str, list] = {"forget": [], "retain": []}
    queues: dict[tuple[int, ...], collections.deque] = {}
    for scope, pairs in (("forget", FORGET), ("retain", RETAIN)):
        for pair in pairs:
            ids = tokenizer(pair.question + "\n\n" + pair.answer)["input_ids"]
            nq = len(tokenizer.tokenize(pair.question, add_special_tokens=True))
            rows = [
                official_localization_copy(tokenizer, pair.question, pair.answer, rng, max_length)
                for _ in range(passes)
            ]
            official_rows[scope] += rows  # replicate_samples: num_copies consecutive copies
            queues[tuple(ids + [eos])] = collections.deque(
                Encoded(input_ids=tuple(x[: len(ids) + 1]), labels=tuple(y[: len(ids) + 1]), prompt_length=nq)
                for x, y, _ in rows
            )
    assert len(queues) == len(FORGET) + len(RETAIN)

    def official_copy(example, allowed, eos_id, generator):
        return queues[tuple(example.input_ids)].popleft()

    monkeypatch.setattr(memflex_localizer, "corrupted_copy", official_copy)
    params = MemFlexLocalizerParams(n_passes=passes, batch_size=16, mu=0.9, sigma=0.0)
    g_ul, g_rt = scope_gradients(
        LocalizerRun("memflex", params, 7), model, FORGET, RETAIN, UnlearnContext(encoder=raw, seed=0)
    )
    assert not any(queues.values())  # n_passes copies of each example, no more

    def compute_info(rows):
        grad_info = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
        model.eval()
        for input_ids, labels, attention_mask in rows:
            loss = model(
                input_ids=torch.tensor([input_ids]),
                labels=torch.tensor([labels]),
                attention_mask=torch.tensor([attention_mask]),
            ).loss
            loss.backward()
            for name, p in model.named_parameters():
                grad_info[name] += p.grad.detach().float()
            model.zero_grad()
        return {name: g / len(rows) for name, g in grad_info.items()}

    for ours, scope in ((g_ul, "forget"), (g_rt, "retain")):
        official = compute_info(official_rows[scope])
        assert ours.keys() == official.keys()
        for name in official:
            assert torch.allclose(ours[name], official[name], atol=1e-6, rtol=1e-4), name


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


# --- Raw format with a LLaMA-style (SentencePiece) tokenizer (row 1): ``llm_tokenize_with_chunk.py:42-50`` ---


def separator_merging_tokenizer():
    """The LLaMA-style tokenizer trained on questions followed by the separator: it learns
    a ``?\\n\\n`` piece, so ``question + "\\n\\n" + answer`` does not start with the
    question's own tokens (as with Qwen-style vocabularies; never with LLaMA-2's, whose
    newlines are byte pieces)."""
    return sentencepiece_tokenizer(
        [t for p in PAIRS for t in (p.question, p.answer)] + [p.question + "\n\n" for p in PAIRS]
    )


def test_raw_format_with_a_llama_style_tokenizer_is_the_official_tokenisation(sp_tokenizer):
    """``tokenizer(question + "\\n\\n" + answer)`` with LLaMA's conventions (BOS added,
    Metaspace ``▁`` prefix, newlines as byte pieces), labels masked up to
    ``pre_len = len(tokenizer(question))``: the separator's two ``<0x0A>`` pieces are
    labelled. Fails if the answer is tokenised apart (a spurious ``▁`` piece) or the
    prompt/BOS handling changes; the byte-level BPE above cannot show either."""
    raw = PromptEncoder(sp_tokenizer, 96, prompt_format="raw")
    prefixed = raw.with_prefix(system_prompt="You are a privacy-sensitive assistant.")
    for pair in PAIRS:
        input_ids, labels = official_tokenize(sp_tokenizer, pair.question, pair.answer)
        encoded = raw.encode(pair, with_eos=raw.unlearning_eos)
        assert (list(encoded.input_ids), list(encoded.labels)) == (input_ids, labels)
        pre_len = encoded.prompt_length
        tokens = sp_tokenizer.convert_ids_to_tokens(input_ids)
        assert tokens[0] == "<s>" and tokens[1].startswith("\u2581")
        assert tokens[pre_len : pre_len + 2] == ["<0x0A>", "<0x0A>"] and labels[pre_len] == input_ids[pre_len]
        input_ids, labels = official_tokenize(
            sp_tokenizer, "You are a privacy-sensitive assistant.\n" + pair.question, pair.answer
        )
        encoded = prefixed.encode(pair, with_eos=False)  # the official direct_prompts
        assert (list(encoded.input_ids), list(encoded.labels)) == (input_ids, labels)
    # tokenised apart, the continuation would begin with Metaspace's dummy-prefix piece
    apart = sp_tokenizer("\n\n" + PAIRS[0].answer, add_special_tokens=False)["input_ids"]
    apart = sp_tokenizer.convert_ids_to_tokens(apart)
    assert apart[:3] == ["\u2581", "<0x0A>", "<0x0A>"]


def test_raw_format_masks_the_official_pre_len_when_the_question_merges_with_the_separator():
    """Where ``question + "\\n\\n"`` merges (a ``?\\n\\n`` piece), the prompt is still the
    question's own length: the official ``pre_len`` positions are masked, the merged
    piece among them. (The ids are checked by the test below.) Fails if the harness
    masks more or fewer positions (e.g. only the prefix the two tokenisations share)."""
    tok = separator_merging_tokenizer()
    raw = PromptEncoder(tok, 96, prompt_format="raw")
    for pair in PAIRS:
        question = tok(pair.question)["input_ids"]
        input_ids, labels = official_tokenize(tok, pair.question, pair.answer)
        assert input_ids[: len(question)] != question  # the merge
        assert tok.convert_ids_to_tokens(input_ids)[len(question) - 1].endswith("?\n\n")  # e.g. "▁Mendoza?\n\n"
        encoded = raw.encode(pair, with_eos=False)
        pre_len = labels.count(IGNORE_INDEX)
        assert encoded.prompt_length == pre_len == len(question)
        assert list(encoded.labels[:pre_len]) == [IGNORE_INDEX] * pre_len


def test_raw_format_is_the_official_tokenisation_when_the_question_merges_with_the_separator():
    """Found by this test (issue 26): the harness tokenised ``\\n\\n`` + answer apart where
    the question merged with the separator; it now keeps the official one-string ids and
    masks the official ``pre_len``. Fails with the earlier fallback."""
    tok = separator_merging_tokenizer()
    raw = PromptEncoder(tok, 96, prompt_format="raw")
    for pair in PAIRS:
        input_ids, labels = official_tokenize(tok, pair.question, pair.answer)
        encoded = raw.encode(pair, with_eos=False)
        assert (list(encoded.input_ids), list(encoded.labels)) == (input_ids, labels)
