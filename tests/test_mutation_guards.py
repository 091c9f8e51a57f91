"""Guards against specific wrong versions of the code that the rest of the suite lets pass.

Each test names the mutation it catches. All inputs are hand-made and small: a stub
causal LM with dictated logits, hand-written gradient tensors, a one-layer Llama.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from helpers import tiny_llama
from knowundo_bench.benchmark.encoding import IGNORE_INDEX, Encoded, PromptEncoder
from knowundo_bench.benchmark.pairs import Benchmark, QAPair
from knowundo_bench.config.evaluation import EvalSpec
from knowundo_bench.evaluate.scopes import evaluate
from knowundo_bench.plugins.localizers import memflex as memflex_localizer
from knowundo_bench.plugins.localizers import memflex_neurons
from knowundo_bench.plugins.localizers.memflex import MemFlexLocalizerParams, select
from knowundo_bench.plugins.localizers.memflex_neurons import row_statistics
from knowundo_bench.plugins.methods.ga import gradient_ascent
from knowundo_bench.plugins.models.tiny import train_tokenizer
from knowundo_bench.train.hook_types import LocalizerRun
from knowundo_bench.train.losses import answer_loss

# --------------------------------------------------------------------------------------
# evaluate(): Unlearn Success = 100 - accuracy, Avg Success = mean of the two scopes
# --------------------------------------------------------------------------------------


class ScriptedLM(torch.nn.Module):
    """A causal LM stub whose greedy next-token prediction is dictated per example.

    For a row whose unpadded token sequence is in ``answered``, the logits at position t
    peak on the token actually at t+1 (every answer token right); for any other row they
    peak on a different token (every answer token wrong). So each example's accuracy is
    exactly 1 or 0, whatever the tokenizer splits the text into.
    """

    def __init__(self, vocab_size: int, answered: set[tuple[int, ...]]) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.answered = answered
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the stub a device

    def forward(self, input_ids, attention_mask=None, labels=None, **kwargs):
        batch, width = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        logits = torch.zeros(batch, width, self.vocab_size)
        for row in range(batch):
            length = int(attention_mask[row].sum())
            ids = input_ids[row, :length].tolist()
            right = tuple(ids) in self.answered
            for t in range(length - 1):
                gold = ids[t + 1]
                logits[row, t, gold if right else (gold + 1) % self.vocab_size] = 10.0
        return SimpleNamespace(logits=logits)


def qa(i: int, scope: str) -> QAPair:
    return QAPair(question=f"Who is person {scope} {i}?", answer=f"Person {i} is a writer.", scope=scope, split="val")


def qa_encoder(pairs: list[QAPair]) -> PromptEncoder:
    """A prompt encoder over a tokenizer trained on ``pairs``' prompts and answers."""
    tokenizer = train_tokenizer([f"Question: {p.question}\nAnswer: {p.answer}" for p in pairs], 300)
    return PromptEncoder(tokenizer, max_length=64)


def test_evaluate_unlearn_success_is_100_minus_accuracy_and_avg_is_the_mean():
    """Guards evaluate() against (a) Avg Success = max(unlearn, retention) instead of their
    mean and (b) Unlearn Success = accuracy instead of 100 - accuracy.

    Unlearn val: 1 of 5 examples answered -> accuracy 20 -> Unlearn Success 80 (not 20).
    Retention val: 3 of 5 answered -> Retention Success 60.
    Avg Success = (80 + 60) / 2 = 70 (max would be 80; with mutation (b) it would be 40).
    """
    unlearn = [qa(i, "unlearn") for i in range(5)]
    retention = [qa(i, "retention") for i in range(5)]
    train = [QAPair(question="Q?", answer="A.", scope=s, split="train") for s in ("unlearn", "retention")]
    benchmark = Benchmark(pairs=tuple(unlearn + retention + train))
    encoder = qa_encoder(unlearn + retention)
    tokenizer = encoder.tokenizer
    answered_pairs = unlearn[:1] + retention[:3]
    answered = {tuple(encoder.encode(p, with_eos=False).input_ids) for p in answered_pairs}
    assert len(answered) == 4
    model = ScriptedLM(len(tokenizer), answered)
    spec = EvalSpec(batch_size=2, rouge=False, prompt_prefixes={})

    metrics = evaluate(model, encoder, benchmark, spec)

    assert metrics["raw"]["unlearn"]["accuracy"] == pytest.approx(20.0)
    assert metrics["raw"]["retention"]["accuracy"] == pytest.approx(60.0)
    assert metrics["unlearn"]["success"] == pytest.approx(80.0)
    assert metrics["retention"]["success"] == pytest.approx(60.0)
    assert metrics["avg_success"] == pytest.approx(70.0)
    assert metrics["unlearn"]["rouge_l"] is None and metrics["retention"]["rouge_l"] is None


# --------------------------------------------------------------------------------------
# memflex_neurons: per-row test cos < mu and magnitude > sigma
# --------------------------------------------------------------------------------------

# Rows of one 3x2 tensor "w":
#   row 0: same direction, large   -> cos  1, magnitude 1    -> frozen (aligned)
#   row 1: opposite, large         -> cos -1, magnitude 1    -> selected
#   row 2: opposite, tiny          -> cos -1, magnitude 1e-3 -> frozen (below sigma)
G_UL_W = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1e-3, 1e-3]])
G_RT_W = torch.tensor([[2.0, 2.0], [-1.0, -1.0], [-1.0, -1.0]])
# A second tensor, aligned in every row: never selected.
G_UL_V = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
G_RT_V = torch.tensor([[3.0, 0.0], [0.0, 3.0]])


def test_row_statistics_hand_made_rows():
    """row_statistics returns each row's cosine (1, -1, -1) and mean|G_UL| (1, 1, 1e-3);
    guards the inputs of the memflex_neurons cosine test."""
    cos, magnitude = row_statistics(G_UL_W, G_RT_W)
    assert cos.tolist() == pytest.approx([1.0, -1.0, -1.0])
    assert magnitude.tolist() == pytest.approx([1.0, 1.0, 1e-3])


def test_memflex_neurons_keeps_only_the_opposite_large_row(monkeypatch):
    """Guards memflex_neurons.localize against a flipped cosine test (cos > mu instead of
    cos < mu): with mu=0.5, sigma=0.01 only row 1 of "w" (cos -1, magnitude 1) passes;
    the flipped test would keep row 0 and every row of "v" instead."""
    grads = ({"w": G_UL_W, "v": G_UL_V}, {"w": G_RT_W, "v": G_RT_V})
    monkeypatch.setattr(memflex_neurons, "scope_gradients", lambda *args, **kwargs: grads)
    run = LocalizerRun(name="memflex_neurons", params=MemFlexLocalizerParams(mu=0.5, sigma=0.01), seed=0)

    result = memflex_neurons.localize(localizer=run, model=None, forget=[], retain=[], context=None)

    assert result.selected == ["w"]
    assert set(result.row_masks) == {"w"}
    assert result.row_masks["w"].tolist() == [False, True, False]
    assert result.details["tensors"]["w"] == {"rows": 3, "selected_rows": 1}
    assert result.details["tensors"]["v"] == {"rows": 2, "selected_rows": 0}


# --------------------------------------------------------------------------------------
# memflex (tensor level): select = cos < mu and magnitude > sigma, both strict
# --------------------------------------------------------------------------------------


def test_memflex_select_strict_inequalities():
    """Guards memflex_localizer.select against a flipped cosine test (cos > mu) and
    against non-strict comparisons (cos <= mu, magnitude >= sigma)."""
    stats = {
        "opposite_large": {"cos": -1.0, "magnitude": 1.0},  # selected
        "aligned_large": {"cos": 1.0, "magnitude": 1.0},  # cos above mu
        "opposite_tiny": {"cos": -1.0, "magnitude": 1e-3},  # magnitude below sigma
        "cos_at_mu": {"cos": 0.5, "magnitude": 1.0},  # cos == mu: not < mu
        "magnitude_at_sigma": {"cos": -1.0, "magnitude": 0.01},  # magnitude == sigma: not > sigma
    }
    assert select(stats, mu=0.5, sigma=0.01) == ["opposite_large"]


def test_memflex_localize_selects_the_opposite_large_tensor(monkeypatch):
    """Guards memflex_localizer.localize (through select) against cos > mu: of three
    tensors only the one whose gradients point apart with a large G_UL is selected."""
    g_ul = {
        "aligned": torch.tensor([1.0, 1.0]),
        "opposite": torch.tensor([1.0, 1.0]),
        "tiny": torch.tensor([1e-3, 1e-3]),
    }
    g_rt = {
        "aligned": torch.tensor([2.0, 2.0]),
        "opposite": torch.tensor([-1.0, -1.0]),
        "tiny": torch.tensor([-1.0, -1.0]),
    }
    monkeypatch.setattr(memflex_localizer, "scope_gradients", lambda *args, **kwargs: (g_ul, g_rt))
    run = LocalizerRun(name="memflex", params=MemFlexLocalizerParams(mu=0.5, sigma=0.01), seed=0)

    result = memflex_localizer.localize(localizer=run, model=None, forget=[], retain=[], context=None)

    assert result.selected == ["opposite"]
    assert result.details["tensors"]["aligned"]["cos"] == pytest.approx(1.0)
    assert result.details["tensors"]["opposite"]["cos"] == pytest.approx(-1.0)


# --------------------------------------------------------------------------------------
# ga: the objective is minus the answer cross-entropy
# --------------------------------------------------------------------------------------


def forget_batch() -> dict[str, torch.Tensor]:
    """Two right-padded examples over a 12-token vocabulary, prompts masked (-100)."""
    X = IGNORE_INDEX
    return {
        "input_ids": torch.tensor([[1, 4, 5, 6, 7, 8], [1, 9, 10, 3, 0, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]),
        "labels": torch.tensor([[X, X, X, 6, 7, 8], [X, X, 10, 3, X, X]]),
    }


def test_gradient_ascent_is_minus_answer_loss_and_raises_forget_loss():
    """Guards ga.gradient_ascent against a lost sign (returning +answer_loss, i.e. plain
    fine-tuning): the objective equals -answer_loss, and one SGD step on it raises the
    forget loss instead of lowering it."""
    model = tiny_llama(12, hidden_size=16, seed=0, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model.eval()  # deterministic forward; gradients still flow
    batch = forget_batch()

    objective = gradient_ascent(model, {"forget": batch})
    with torch.no_grad():
        before = answer_loss(model, batch)
    assert before.item() > 0
    assert objective.item() == pytest.approx(-before.item(), rel=1e-6)

    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    optimizer.zero_grad()
    objective.backward()
    optimizer.step()
    with torch.no_grad():
        after = answer_loss(model, batch)
    assert after.item() > before.item()


# --------------------------------------------------------------------------------------
# Survivors of make mutate (issue 30): the MemFlex helpers, the answer budget, by_share
# --------------------------------------------------------------------------------------


def encoded(prompt: list[int], answer: list[int]) -> Encoded:
    ids = tuple(prompt + answer)
    return Encoded(input_ids=ids, labels=(IGNORE_INDEX,) * len(prompt) + tuple(answer), prompt_length=len(prompt))


def test_answer_positions_drop_only_a_trailing_eos():
    """Mutation: EOS dropped whenever the tokenizer has one (``or`` for ``and``)."""
    from knowundo_bench.plugins.localizers.memflex import answer_positions

    assert answer_positions(encoded([1, 2], [5, 6, 9]), eos_id=9) == [2, 3]
    assert answer_positions(encoded([1, 2], [5, 6, 7]), eos_id=9) == [2, 3, 4]  # truncated: no EOS to keep
    assert answer_positions(encoded([1, 2], [5, 6, 9]), eos_id=None) == [2, 3, 4]


def test_random_targets_keep_the_input_the_prompt_length_and_the_eos_target():
    """Mutations: the copy's prompt length lost; EOS not passed on (so it could be corrupted)."""
    from knowundo_bench.plugins.localizers.memflex import random_targets

    example = encoded([1, 2], [5, 6, 9])
    allowed = torch.tensor([20, 21, 22])
    for seed in range(20):
        copy = random_targets(example, allowed, 9, torch.Generator().manual_seed(seed))
        assert copy.input_ids == example.input_ids and copy.prompt_length == 2
        assert copy.labels[:2] == (IGNORE_INDEX, IGNORE_INDEX) and copy.labels[-1] == 9


def test_accumulate_gives_float32_zeros_for_a_tensor_without_a_gradient():
    """Mutations: a missing gradient read anyway; zeros in the parameter's own dtype."""
    from knowundo_bench.plugins.localizers.memflex import accumulate

    model = torch.nn.Module()
    model.used = torch.nn.Parameter(torch.ones(2, dtype=torch.bfloat16))
    model.unused = torch.nn.Parameter(torch.ones(3, dtype=torch.bfloat16))
    (model.used.float() * 2).sum().backward()
    grads = accumulate(model, ["used", "unused"])
    assert grads["used"].dtype == torch.float32 and grads["used"].tolist() == [2.0, 2.0]
    assert grads["unused"].dtype == torch.float32 and grads["unused"].tolist() == [0.0, 0.0, 0.0]


def test_a_model_without_a_config_or_model_type_is_of_family_unknown():
    from knowundo_bench.plugins.localizers.memflex import model_family

    assert model_family(object()) == "unknown"
    assert model_family(SimpleNamespace(config=SimpleNamespace())) == "unknown"
    assert model_family(SimpleNamespace(config=SimpleNamespace(model_type="qwen2"))) == "qwen2"


def test_near_threshold_is_relative_inclusive_and_in_float64():
    """Mutations: ``<`` for ``<=``; a division for the product; the 1e-12 floor at 1; float32."""
    from knowundo_bench.plugins.localizers.memflex import NEAR_THRESHOLD, near_threshold

    assert near_threshold([1e-17], 0.0).tolist() == [True]  # at the floor's distance exactly
    assert near_threshold([1e-9], 0.0).tolist() == [False]
    assert near_threshold([0.5 + 1e-5], 0.5).tolist() == [False]  # 2e-5 away relative to 0.5
    assert near_threshold([0.5 + 4e-6], 0.5).tolist() == [True]
    # a value just outside in float64 that float32 rounding would bring inside
    threshold = 0.3
    outside = threshold * (1 + NEAR_THRESHOLD) * (1 + 1e-12)
    assert float(torch.tensor(outside, dtype=torch.float32)) - threshold <= NEAR_THRESHOLD * threshold
    assert near_threshold([outside], threshold).tolist() == [False]


def selection_of(params: MemFlexLocalizerParams, magnitudes: dict[str, float]) -> list[str]:
    needed = memflex_localizer.selectable_tensors(params, None, None)
    return needed({name: torch.full((4,), value, dtype=torch.float64) for name, value in magnitudes.items()})


def test_the_retain_pass_keeps_tensors_down_to_just_below_sigma():
    """``selectable_tensors``: magnitude above sigma less its near-threshold margin, and
    none when mu is above 1. Mutations: the margin added, its floor at 1, ``>=``, ``mu < 1``."""
    from knowundo_bench.plugins.localizers.memflex import NEAR_THRESHOLD

    sigma = 1e-3
    floor = sigma - NEAR_THRESHOLD * max(abs(sigma), 1e-12)
    magnitudes = {"above": 2e-3, "just_below": sigma * (1 - NEAR_THRESHOLD / 2), "at_floor": floor, "low": 0.9995e-3}
    assert selection_of(MemFlexLocalizerParams(mu=0.5, sigma=sigma), magnitudes) == ["above", "just_below"]
    assert selection_of(MemFlexLocalizerParams(mu=1.0, sigma=sigma), magnitudes) == ["above", "just_below"]
    assert selection_of(MemFlexLocalizerParams(mu=1.5, sigma=sigma), magnitudes) == []


@pytest.mark.parametrize(("mu", "sigma"), [("auto", 0.1), (0.5, "auto")])
def test_table_12_is_looked_up_before_any_work_when_either_threshold_is_auto(mu, sigma):
    model = SimpleNamespace(config=SimpleNamespace(model_type="gpt2"))
    context = SimpleNamespace(domain="privacy")
    with pytest.raises(ValueError, match="Table 12's LLaMA and Qwen rows only"):
        memflex_localizer.selectable_tensors(MemFlexLocalizerParams(mu=mu, sigma=sigma), model, context)


def test_thresholds_take_only_the_auto_one_from_table_12_and_percentiles_in_float64():
    llama = SimpleNamespace(config=SimpleNamespace(model_type="llama"))
    privacy = SimpleNamespace(domain="privacy")
    thresholds = memflex_localizer.thresholds
    assert thresholds(MemFlexLocalizerParams(mu=0.5, sigma="auto"), llama, privacy, [1.0]) == (0.5, 4e-4)
    assert thresholds(MemFlexLocalizerParams(mu="auto", sigma=0.25), llama, privacy, [1.0]) == (0.96, 0.25)
    by_percentile = thresholds(MemFlexLocalizerParams(mu=0.5, sigma_percentile=50), llama, privacy, [0.1, 0.2, 0.3])
    assert by_percentile == (0.5, 0.2)  # float32 magnitudes would give 0.20000000298


def test_the_answer_budget_is_the_longest_answer_plus_a_tenth_at_least_8():
    from knowundo_bench.evaluate.scopes import answer_budget

    encoder = SimpleNamespace(answer_ids=lambda answer: list(range(len(answer.split()))))
    pairs = [
        QAPair(question="q", answer=" ".join(["w"] * n), scope="unlearn", split="val", instance="a") for n in (3, 20)
    ]
    assert answer_budget(encoder, pairs) == 28
    many = [QAPair(question="q", answer=" ".join(["w"] * 100), scope="unlearn", split="val", instance="a")]
    assert answer_budget(encoder, many) == 110
    assert answer_budget(encoder, []) == 8


class FixedLogits(torch.nn.Module):
    """A causal LM stub that answers a batch of n rows with the first n rows of ``logits``."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, input_ids, attention_mask=None, labels=None):
        return SimpleNamespace(logits=self.logits[: len(input_ids)])


def test_weighted_nll_without_by_share_ignores_the_parts_shares():
    """Mutation: ``by_share`` not passed on (scope_terms' default weighs by share)."""
    from knowundo_bench.train.losses import WeightedNLL, example_mean_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6)

    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 3, 1], [IGNORE_INDEX, 2, 4, 5]])
    part = {"input_ids": torch.zeros(2, 4, dtype=torch.long), "attention_mask": torch.ones(2, 4), "labels": labels}
    batch = {"forget": {**part, "share": 0.25}, "retain": {**part, "share": 0.75}}
    model = FixedLogits(logits)
    plain = float(example_mean_loss(model, part))
    assert float(WeightedNLL({"forget": -1.0, "retain": 2.0}, by_share=False)(model, batch)) == pytest.approx(plain)
    weighed = float(WeightedNLL({"forget": -1.0, "retain": 2.0})(model, batch))
    assert weighed == pytest.approx(-0.25 * plain + 1.5 * plain)


def test_the_localizers_max_length_truncates_what_its_gradients_read():
    """Mutations: ``max_length`` ignored, or passed on as None (no truncation)."""
    from helpers import authors_tokenizer, two_authors
    from knowundo_bench.train.context import UnlearnContext

    pairs, forget, retain = two_authors()
    tokenizer = authors_tokenizer(pairs)
    model = tiny_llama(len(tokenizer), tokenizer=tokenizer)
    seen: list[int] = []

    def gradients(model, encoder, examples, names, p, allowed, generator, reporter):
        seen.extend(len(example.input_ids) for example in examples)
        return {name: torch.zeros(1) for name in names}

    context = UnlearnContext(encoder=PromptEncoder(tokenizer, 96, prompt_format="raw"), seed=0)
    for max_length, longest in ((None, 96), (12, 12)):
        seen.clear()
        run = LocalizerRun("memflex", MemFlexLocalizerParams(mu=0.5, sigma=0.0, max_length=max_length), 0)
        memflex_localizer.scope_gradients(run, model, forget, retain, context, gradients)
        assert seen and max(seen) <= longest
        assert max(seen) == longest or max_length is None and max(seen) > 12


# --------------------------------------------------------------------------------------
# Intervals held within each kind of number's ends (issue 31)
# --------------------------------------------------------------------------------------


def test_value_bounds_give_each_kind_its_exact_ends():
    """Mutations: an end moved by one, a base looked up whole (``split`` on the wrong
    separator), a membership test turned round."""
    from knowundo_bench.leaderboard.aggregate import value_bounds

    assert value_bounds("recovery@quantize") == (-100.0, 100.0)
    assert value_bounds("unlearn_success") == (0.0, 100.0)
    assert value_bounds("retention_success@careful") == (0.0, 100.0)  # a prefix's column
    assert value_bounds("mia_auc_loss") == (0.0, 1.0)
    assert value_bounds("unlearn_ppl") is None and value_bounds("privleak") is None


def test_within_bounds_clips_each_end_and_leaves_the_unbounded_alone():
    from knowundo_bench.leaderboard.aggregate import within_bounds

    assert within_bounds("unlearn_success", (92.69, 104.05)) == [92.69, 100.0]
    assert within_bounds("retention_success", (-2.44, 3.92)) == [0.0, 3.92]
    assert within_bounds("mia_auc_zlib", (-0.2, 0.4)) == [0.0, 0.4]
    assert within_bounds("unlearn_ppl", (5.0, 1e12)) == [5.0, 1e12]


# --------------------------------------------------------------------------------------
# Table 5's efficiency view
# --------------------------------------------------------------------------------------


def test_memory_ratio_needs_both_peaks_and_holds_only_below_the_floor():
    """Mutations: ``and`` for ``or`` (a missing GA peak reaches the division), ``<=`` for
    ``<`` at the noise floor."""
    from knowundo_bench.leaderboard.efficiency import BELOW_NOISE_FLOOR, memory_ratio
    from knowundo_bench.records.memory import CPU_MEMORY, CPU_RSS_NOISE_FLOOR_GB

    def row(gb):
        return {"peak_mem_gb": gb, "memory_kind": CPU_MEMORY}

    assert memory_ratio(row(1.0), row(None)) == (None, None)
    assert memory_ratio(row(1.0), row(0.0)) == (None, None)
    floor = CPU_RSS_NOISE_FLOOR_GB
    assert memory_ratio(row(2 * floor), row(floor)) == (pytest.approx(2.0), None)
    assert memory_ratio(row(2 * floor), row(floor * 0.99)) == (None, BELOW_NOISE_FLOOR)


def test_unlearning_seconds_have_no_total_without_steps():
    """Mutations: a total of ``""`` or of 0 s for a record without step times."""
    from knowundo_bench.leaderboard.efficiency import unlearning_seconds
    from knowundo_bench.records.schema import ResultRecord

    record = ResultRecord.model_validate({"method": "ga", "status": "ok", "training": {"step_seconds": []}})
    assert unlearning_seconds(record) == {"localize_seconds": None, "total_seconds": None}
    timed = ResultRecord.model_validate({"method": "ga", "status": "ok", "training": {"step_seconds": [1.0, 2.5]}})
    assert unlearning_seconds(timed) == {"localize_seconds": None, "total_seconds": 3.5}


def test_efficiency_rows_take_the_stored_memory_kind_else_the_devices(tmp_path):
    """Mutations: the stored kind ignored, or the device fallback (records before the kind
    was stored) ignored."""
    from knowundo_bench.leaderboard.efficiency import efficiency_rows
    from knowundo_bench.records.files import write_record
    from knowundo_bench.records.memory import CPU_MEMORY, CUDA_MEMORY

    trained = {"sec_per_step": 1.0, "peak_mem_gb": 1.0, "step_seconds": [1.0]}
    write_record(
        tmp_path,
        "ga",
        {
            "method": "ga",
            "method_name": "ga",
            "order": 1,
            "status": "ok",
            "training": {**trained, "memory_kind": CUDA_MEMORY},
        },
    )
    write_record(
        tmp_path,
        "ga_gd",
        {
            "method": "ga_gd",
            "method_name": "ga_gd",
            "order": 2,
            "status": "ok",
            "training": {**trained, "device": "cpu"},
        },
    )
    kinds = {row["method"]: row["memory_kind"] for row in efficiency_rows(tmp_path)}
    assert kinds == {"ga": CUDA_MEMORY, "ga_gd": CPU_MEMORY}


# --------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------


def test_answer_log_likelihood_reads_token_0_where_it_is_an_answer_token():
    """Mutation: labels clamped at 1 instead of 0 (the ignored positions' placeholder), so
    an answer token of id 0 (GPT-2's "!") would be read at id 1."""
    from knowundo_bench.train.losses import answer_log_likelihood

    torch.manual_seed(0)
    logits = torch.randn(1, 4, 6)

    batch = {
        "input_ids": torch.tensor([[5, 2, 0, 3]]),
        "attention_mask": torch.ones(1, 4, dtype=torch.long),
        "labels": torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 0, 3]]),
    }
    total, count = answer_log_likelihood(FixedLogits(logits), batch)
    log_probs = torch.log_softmax(logits[0], dim=-1)
    assert count.tolist() == [2]
    assert float(total[0]) == pytest.approx(float(log_probs[1, 0] + log_probs[2, 3]))


# The evaluation's progress total
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rouge", "log_samples", "passes"), [(False, False, 1), (True, False, 2), (False, True, 2)])
def test_evaluation_work_counts_a_pass_per_example_and_a_second_for_generation(rouge, log_samples, passes):
    """The progress total of :func:`evaluate`: a teacher-forced pass over every val
    example of both scopes, and a generation pass when ROUGE-L or samples need one."""
    from knowundo_bench.evaluate.scopes import evaluation_work

    benchmark = Benchmark(pairs=(*(qa(i, "unlearn") for i in range(3)), *(qa(i, "retention") for i in range(2))))
    spec = EvalSpec(batch_size=2, rouge=rouge, log_samples=log_samples, prompt_prefixes={})
    assert evaluation_work(benchmark, spec) == passes * 5


def test_answer_loss_hands_the_model_the_batchs_attention_mask():
    """Left-padded batches (and padding-free ones) need the mask. Mutations: the mask
    dropped or replaced by None."""
    seen = {}

    class Recorder(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None, labels=None):
            seen.update(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
            return SimpleNamespace(loss=torch.tensor(1.5))

    batch = {"input_ids": torch.tensor([[5, 6, 7]]), "attention_mask": torch.tensor([[0, 1, 1]])}
    batch["labels"] = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 7]])
    assert float(answer_loss(Recorder(), batch)) == 1.5
    assert all(seen[key] is batch[key] for key in batch)


def test_evaluate_scopes_scores_both_splits_in_eval_mode_as_the_caller_asked(monkeypatch):
    """Mutations: the model left in training mode (dropout on), the progress reporter, the
    generation flag or the guard not handed on, for either scope."""
    from knowundo_bench.evaluate import scopes

    calls = []

    def score_split(model, encoder, pairs, spec, reporter=None, generate=False, guard=None):
        calls.append((pairs, reporter, generate, guard, model.training, spec.max_new_tokens))
        return len(calls)

    monkeypatch.setattr(scopes, "score_split", score_split)
    model = torch.nn.Linear(1, 1).train()
    benchmark = Benchmark(pairs=(qa(0, "unlearn"), qa(1, "retention")))
    spec = EvalSpec(batch_size=2, rouge=False, prompt_prefixes={}, max_new_tokens=5)
    reporter, guard = object(), object()
    assert scopes.evaluate_scopes(model, None, benchmark, spec, reporter, True, guard) == (1, 2)
    assert calls == [
        (benchmark.unlearn_val, reporter, True, guard, False, 5),
        (benchmark.retention_val, reporter, True, guard, False, 5),
    ]
    assert model.training


def test_score_split_reports_progress_names_its_guard_and_passes_the_fault_point(monkeypatch):
    """Mutations: no progress reported while scoring, no greedy answers by default dropped,
    the guard's name left out of its error, the crash tests' fault point renamed."""
    from knowundo_bench.evaluate import scopes

    pairs = [qa(i, "unlearn") for i in range(3)]
    encoder = qa_encoder(pairs)
    tokenizer = encoder.tokenizer
    model = ScriptedLM(len(tokenizer), set())  # no generate(): greedy answers would fail
    points: list[str] = []
    monkeypatch.setattr(scopes, "fault_point", points.append)
    advanced: list[int] = []
    spec = EvalSpec(batch_size=2, rouge=False, prompt_prefixes={})
    scores = scopes.score_split(model, encoder, pairs, spec, SimpleNamespace(advance=advanced.append))
    assert points == ["evaluate"] and sum(advanced) == 3 and scores.generations == ()
    assert scores.example_accuracy == (0.0, 0.0, 0.0) and scores.accuracy == 0.0
    wrong = scopes.NamedGuard("strict", SimpleNamespace(refuses=lambda requests: [True], refusal="No."))
    with pytest.raises(RuntimeError, match=r"^guard 'strict' must return one bool per request \(3\)"):
        scopes.score_split(model, encoder, pairs, spec, guard=wrong)


def test_scope_metrics_keep_every_reading_and_refusals_only_behind_a_guard_on_both():
    """Mutations: a reading stored under another key, ``or`` for ``and`` in "behind a
    guard", the retention refusal rate or the refusals dropped, 101 for 100 in percent."""
    import dataclasses

    from knowundo_bench.evaluate.scopes import ExampleScores, ScopeScores, scope_metrics

    unlearn = ScopeScores(20.0, 3.0, 10.0, 4.0, (0.0, 100.0), generations=("No.", "a b"), refused=(True, False))
    retention = ScopeScores(60.0, 2.0, 50.0, 2.5, (100.0,), generations=("c d",), refused=(False,))
    metrics = scope_metrics(unlearn, retention)
    assert metrics["unlearn"] == {"success": 80.0, "ppl": 3.0, "rouge_l": 10.0, "ppl_token": 4.0, "refusal_rate": 50.0}
    assert metrics["retention"] == {"success": 60.0, "ppl": 2.0, "rouge_l": 50.0, "ppl_token": 2.5, "refusal_rate": 0.0}
    assert metrics["raw"]["unlearn"] == {
        "accuracy": 20.0,
        "ppl": 3.0,
        "rouge_l": 10.0,
        "ppl_token": 4.0,
        "example_accuracy": [0.0, 100.0],
        "example_refused": [True, False],
    }
    unguarded = scope_metrics(unlearn, dataclasses.replace(retention, refused=None))
    assert "refusal_rate" not in unguarded["unlearn"] and "refusal_rate" not in unguarded["retention"]
    assert "example_refused" not in unguarded["raw"]["retention"]
    examples = ExampleScores(torch.tensor([1.0, 0.0, math.nan]), torch.zeros(3), torch.ones(3))
    percent = examples.percent()
    assert percent[:2] == [100.0, 0.0] and math.isnan(percent[2])


class MaskRecorder(FixedLogits):
    """:class:`FixedLogits` that keeps the attention masks it was given."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__(logits)
        self.masks: list[torch.Tensor | None] = []

    def forward(self, input_ids, attention_mask=None, labels=None):
        self.masks.append(attention_mask)
        output = super().forward(input_ids, attention_mask, labels)
        if labels is not None:  # a model's own loss: the mean over the shifted answer tokens
            logits = output.logits[:, :-1].reshape(-1, output.logits.shape[-1])
            output.loss = torch.nn.functional.cross_entropy(logits, labels[:, 1:].reshape(-1))
        return output


@pytest.mark.parametrize("per", ["example", "token"])
@pytest.mark.parametrize("by_share", [True, False])
def test_example_weights_times_nll_sums_give_the_objective(per, by_share):
    """The stacked window's loss is the sum over parts of weights x NLL sums; it must equal
    the objective on the micro-batch. A label at the first shifted position, an example
    with one answer token and a part with one token in all catch the mutations of the
    counts' slice, the clamp, the token mean's floor and ``by_share`` ignored."""
    from knowundo_bench.train.losses import WeightedNLL, weighted_nll

    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6)
    forget_labels = torch.tensor([[IGNORE_INDEX, 2, 4, 5], [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 3]])
    retain_labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 1]])
    ids, mask = torch.zeros(2, 4, dtype=torch.long), torch.ones(2, 4, dtype=torch.long)
    batch = {
        "forget": {"input_ids": ids, "attention_mask": mask, "labels": forget_labels, "share": 0.25},
        "retain": {"input_ids": ids[:1], "attention_mask": mask[:1], "labels": retain_labels, "share": 0.75},
    }
    objective = WeightedNLL({"forget": -1.0, "retain": 2.0}, per=per, by_share=by_share)
    model = MaskRecorder(logits)
    stacked = sum(weighted_nll(model, part, weights) for part, weights in objective.example_weights(batch))
    assert float(stacked) == pytest.approx(float(objective(model, batch)), rel=1e-5)
    assert model.masks[0] is mask  # weighted_nll hands the model the batch's mask


def test_stacked_parts_pad_on_the_right_with_attention_0_and_ignored_labels():
    """Mutation: the padded positions attended."""
    from knowundo_bench.train.losses import stack_parts

    wide = {"input_ids": torch.tensor([[5, 6, 7]]), "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    narrow = {"input_ids": torch.tensor([[8]]), "attention_mask": torch.ones(1, 1, dtype=torch.long)}
    wide["labels"], narrow["labels"] = wide["input_ids"].clone(), narrow["input_ids"].clone()
    stacked = stack_parts([wide, narrow])
    assert stacked["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert stacked["labels"].tolist() == [[5, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    assert stacked["input_ids"][:, 0].tolist() == [5, 8]


def test_summary_of_examples_without_answer_tokens_and_with_one():
    """Mutations: NaN accuracy without any scored example, an example with one answer
    token left out of the per-example perplexity."""
    from knowundo_bench.evaluate.scopes import ExampleScores

    none_scored = ExampleScores(torch.tensor([math.nan, math.nan]), torch.zeros(2), torch.zeros(2, dtype=torch.long))
    assert math.isnan(none_scored.summary()[0])
    sums, counts = torch.tensor([2.0, 2.0], dtype=torch.float64), torch.tensor([1, 2])
    accuracy, ppl, ppl_token = ExampleScores(torch.tensor([1.0, 0.0]), sums, counts).summary()
    assert accuracy == 50.0
    assert ppl == pytest.approx(math.exp((2.0 + 1.0) / 2)) and ppl_token == pytest.approx(math.exp(4.0 / 3))


def test_score_split_generates_within_the_answer_budget_and_scores_rouge(monkeypatch):
    """Mutations: the budget without the spec's tokens (``and``, or answer_budget's
    arguments lost), the reporter not given to generation, ROUGE-L's mean (``*`` for
    ``/``, 101, dropped), the token-pooled perplexity dropped."""
    from knowundo_bench.evaluate import scopes

    pairs = [qa(i, "unlearn") for i in range(2)]
    encoder = qa_encoder(pairs)
    tokenizer = encoder.tokenizer
    asked = []

    def greedy_answers(model, encoder, examples, batch_size, max_new_tokens, reporter=None):
        asked.append((len(examples), max_new_tokens, reporter))
        return [pairs[0].answer, "nothing alike"]

    monkeypatch.setattr(scopes, "greedy_answers", greedy_answers)
    reporter = SimpleNamespace(advance=lambda n: None)
    model = ScriptedLM(len(tokenizer), set())
    spec = EvalSpec(batch_size=2, rouge=True, prompt_prefixes={})
    scores = scopes.score_split(model, encoder, pairs, spec, reporter)
    assert asked == [(2, scopes.answer_budget(encoder, pairs), reporter)]
    assert scores.rouge_l == pytest.approx(50.0 * (1.0 + scopes.rouge_l("nothing alike", pairs[1].answer)))
    assert scores.ppl_token is not None and math.isfinite(scores.ppl_token)
    scopes.score_split(model, encoder, pairs, spec.model_copy(update={"max_new_tokens": 3}), reporter)
    assert asked[-1][1] == 3
