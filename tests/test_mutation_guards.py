"""Guards against specific wrong versions of the code that the rest of the suite lets pass.

Each test names the mutation it catches. All inputs are hand-made and small: a stub
causal LM with dictated logits, hand-written gradient tensors, a one-layer Llama.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import knowundo_bench.run.identity as identity_module
from helpers import TINY_SPEC, tiny_llama
from knowundo_bench.benchmark.encoding import IGNORE_INDEX, Encoded, PromptEncoder
from knowundo_bench.benchmark.pairs import Benchmark, QAPair
from knowundo_bench.config.evaluation import EvalSpec
from knowundo_bench.evaluate.scopes import evaluate
from knowundo_bench.plugin.manager import get_plugins
from knowundo_bench.plugins.localizers import memflex as memflex_localizer
from knowundo_bench.plugins.localizers import memflex_neurons
from knowundo_bench.plugins.localizers.memflex import MemFlexLocalizerParams, select
from knowundo_bench.plugins.localizers.memflex_neurons import row_statistics
from knowundo_bench.plugins.methods.ga import gradient_ascent
from knowundo_bench.plugins.models.tiny import train_tokenizer
from knowundo_bench.run.plan import Unit, plan_units
from knowundo_bench.run.resolution import parse_spec
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
    tokenizer = train_tokenizer([f"Question: {p.question}\nAnswer: {p.answer}" for p in unlearn + retention], 300)
    encoder = PromptEncoder(tokenizer, max_length=64)
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


# --------------------------------------------------------------------------------------
# Seeds (run/identity.py) and the evaluation's progress total
# --------------------------------------------------------------------------------------


def test_derived_seeds_are_pinned_numbers_below_2_to_the_31():
    """A method's seed must not change between releases (results are reproduced from the
    spec alone): sha256("<run seed>:<label>")'s first 4 bytes, big-endian, top bit dropped.
    sha256("0:ga") starts c88b9f1f, whose top bit is set. Mutations: ``|`` for ``&``, the
    mask's constant, 5 bytes for 4."""
    from knowundo_bench.run.identity import derived_seed

    assert derived_seed(0, "ga") == 0x488B9F1F == 1217109791
    assert derived_seed(1, "ga") == 0x190FCC79
    assert derived_seed(3, "memflex") == 0x3F84E75B


def test_method_seed_uses_the_run_seed_when_given_and_the_seed_label_first():
    """Mutations: the run seed or the spec's seed ignored, the choice between them turned round."""
    from knowundo_bench.run.identity import derived_seed, method_seed

    resolved = SimpleNamespace(spec=SimpleNamespace(seed=3))
    plain = SimpleNamespace(seed_label=None, ablation_of=None, label="ga")
    assert method_seed(resolved, plain) == derived_seed(3, "ga")
    assert method_seed(resolved, plain, run_seed=5) == derived_seed(5, "ga") != derived_seed(3, "ga")
    control = SimpleNamespace(seed_label=None, ablation_of="memflex", label="memflex_random")
    assert method_seed(resolved, control) == derived_seed(3, "memflex")
    labelled = SimpleNamespace(seed_label="memflex", ablation_of="other", label="memflex_guarded")
    assert method_seed(resolved, labelled, run_seed=7) == derived_seed(7, "memflex")


@pytest.mark.parametrize(("rouge", "log_samples", "passes"), [(False, False, 1), (True, False, 2), (False, True, 2)])
def test_evaluation_work_counts_a_pass_per_example_and_a_second_for_generation(rouge, log_samples, passes):
    """The progress total of :func:`evaluate`: a teacher-forced pass over every val
    example of both scopes, and a generation pass when ROUGE-L or samples need one."""
    from knowundo_bench.evaluate.scopes import evaluation_work

    benchmark = Benchmark(pairs=(*(qa(i, "unlearn") for i in range(3)), *(qa(i, "retention") for i in range(2))))
    spec = EvalSpec(batch_size=2, rouge=rouge, log_samples=log_samples, prompt_prefixes={})
    assert evaluation_work(benchmark, spec) == passes * 5


def tiny_resolved(**changes):
    """TINY_SPEC with GA, resolved by the built-in plugins; ``changes`` replace its fields."""
    return parse_spec({**TINY_SPEC, "methods": [{"name": "ga", "lr": 1e-3, "epochs": 1}], **changes}, get_plugins())


def provenance_of(**changes) -> tuple[identity_module.Provenance, list[Unit]]:
    """:func:`tiny_resolved`'s provenance (data hash "data") and its planned units."""
    resolved = tiny_resolved(**changes)
    return identity_module.Provenance.of(resolved, get_plugins(), "data"), plan_units(resolved)


def test_spec_hash_leaves_out_only_where_and_how_a_run_executes(tmp_path):
    """Mutations: any excluded field dropped from the exclusion, the exclusion or the dump
    emptied, keys unsorted (a method's own fields keep the order they were written in),
    the dump in Python mode (a path is not JSON), the hash's length."""
    import re

    from knowundo_bench.run.identity import spec_hash

    base = spec_hash(tiny_resolved())
    assert re.fullmatch(r"[0-9a-f]{16}", base)
    elsewhere = {
        "output_dir": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "cache"),
        "threads": 1,
        "execution": {"executor": "ray"},
        "logging": ["trackio"],
    }
    for field, value in elsewhere.items():
        assert spec_hash(tiny_resolved(**{field: value})) == base, field
    assert spec_hash(tiny_resolved(seed=1)) != base
    reordered = tiny_resolved(methods=[{"epochs": 1, "lr": 1e-3, "name": "ga"}])
    assert spec_hash(reordered) == base
    with_path = tiny_resolved(
        eval={"batch_size": 32, "max_new_tokens": 8, "general": {}, "general_data_dir": str(tmp_path)}
    )
    assert re.fullmatch(r"[0-9a-f]{16}", spec_hash(with_path)) and spec_hash(with_path) != base


def test_model_label_names_the_first_of_name_file_and_path_that_is_set():
    from pydantic import BaseModel

    from knowundo_bench.run.identity import model_label

    class SourceParams(BaseModel):
        name_or_path: str | None = None
        file: str | None = None
        path: str | None = None

    def resolved(source, **params):
        return SimpleNamespace(
            model_params=SourceParams(**params), spec=SimpleNamespace(model=SimpleNamespace(source=source))
        )

    assert model_label(resolved("tiny")) == "tiny"
    assert model_label(resolved("hf", name_or_path="org/model", file="x.gguf")) == "hf:org/model"
    assert model_label(resolved("gguf", name_or_path="", file="a.gguf", path="/p")) == "gguf:a.gguf"
    assert model_label(resolved("local", path="/models/m")) == "local:/models/m"


def test_provenance_names_built_in_plugins_by_the_harness_version():
    """Mutations: the origin not asked for the plugin, "built-in" not recognised, the method's
    or the localizer's plugin left out of the record's identity."""
    from knowundo_bench import __version__

    origins = {"mine": "built-in", "theirs": "knowundo-mismatch 0.1.0"}
    stub = identity_module.Provenance(None, SimpleNamespace(origin=origins.__getitem__), "data", "spec", versions={})
    assert stub.origin("mine") == f"knowundo-bench {__version__}"
    assert stub.origin("theirs") == "knowundo-mismatch 0.1.0"
    provenance, (vanilla, ga) = provenance_of()
    assert provenance.identity(ga).method_plugin == f"knowundo-bench {__version__}"
    assert provenance.identity(vanilla).method_plugin is None
    assert provenance.identity(ga).localizer_plugin is None
    localised, (_, memflex) = provenance_of(methods=["memflex"])
    assert localised.identity(memflex).localizer_plugin == f"knowundo-bench {__version__}"


def test_a_record_names_the_checkout_commit_it_ran_from():
    """A run from a git checkout records its commit ("+dirty" with local changes): under
    mutmut the code runs from mutants/, no checkout, so this test is skipped there and the
    mutant that drops the commit is accepted in CONTRIBUTING.md."""
    import subprocess
    from pathlib import Path

    root = Path(identity_module.__file__).resolve().parents[3]
    asked = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    if not (root / ".git").exists() or asked.returncode != 0:
        pytest.skip("not a git checkout that git reads here")
    provenance, (_, ga) = provenance_of()
    assert (provenance.identity(ga).git_commit or "").removesuffix("+dirty") == asked.stdout.strip()


UNIT_KEYS = {  # with the harness's version set to "0.0.pin"
    "ga": "25131e28494371957f208ddc",
    "memflex-scope_classifier": "f2e5e22e23aefcb98bfd628a",
    "ga_kl_ood": "64c6e095b5bf2d2e2bc7d4e0",
    "vanilla": "795bae81321770171084a4a7",
}


@pytest.mark.parametrize("methods", [["ga"], [{"name": "memflex", "guard": "scope_classifier"}], ["ga_kl_ood"]])
def test_unit_keys_are_pinned(methods, monkeypatch):
    """A unit's key decides which cached record a rerun reuses, so a change to what goes
    into it (a field renamed, dropped or added, another encoding) makes every earlier
    record stale: update these pins only knowingly, and say so in CHANGELOG.md. The three
    cover a plain method, a localised and guarded one, and one with out-of-distribution
    retain data; the key's inputs, one at a time, are the next test's."""
    monkeypatch.setattr(identity_module, "__version__", "0.0.pin")
    provenance, (vanilla, unit) = provenance_of(methods=methods)
    assert provenance.unit_key("vanilla-key", unit) == UNIT_KEYS[unit.label]
    assert provenance.unit_key("vanilla-key", vanilla) == UNIT_KEYS["vanilla"]


def test_a_unit_key_changes_with_each_input_and_only_with_them(monkeypatch):
    import dataclasses

    def key(vanilla_key="vanilla-key", run_seed=None, **changes):
        provenance, (_, unit) = provenance_of(**changes)
        if run_seed is not None:
            unit = dataclasses.replace(unit, run_seed=run_seed)
        return provenance.unit_key(vanilla_key, unit)

    base = key()
    assert key(vanilla_key="other") != base
    assert key(eval={**TINY_SPEC["eval"], "max_new_tokens": 9}) != base
    assert key(methods=[{"name": "ga", "lr": 2e-3, "epochs": 1}]) != base
    assert key(methods=[{"name": "ga", "lr": 1e-3, "epochs": 1, "label": "ga_two"}]) != base
    assert key(run_seed=7) != base
    assert key(efficiency={"peak_tflops": 100}) != base
    assert key(ood_retain={"max_examples": 7}) == base  # GA has no retain data
    assert key(methods=["ga_kl_ood"]) != key(methods=["ga_kl_ood"], ood_retain={"max_examples": 7})
    assert key(output_dir="elsewhere", threads=1) == base
    monkeypatch.setattr(identity_module, "__version__", "0.0.other")
    assert key() != base


def test_attack_keys_are_pinned_and_change_with_the_attack_and_membership_inference(monkeypatch):
    """An attack's key decides which cached attack section a rerun reuses (pinned as the
    unit keys are, for the same reason); it names the unit, the attack, its parameters
    and plugin, membership inference's settings (its batch size aside) and the format."""
    monkeypatch.setattr(identity_module, "__version__", "0.0.pin")

    def keys(unit_key="unit-key", relearn_steps=2, **eval_changes):
        attacks = ["quantize", {"name": "relearn", "steps": relearn_steps}]
        provenance, _ = provenance_of(eval={**TINY_SPEC["eval"], "attacks": attacks, **eval_changes})
        return provenance.attack_keys(unit_key)

    base = keys()
    assert base == {"quantize": "44369a9902f36bec6cf50a87", "relearn": "25917ce88c842844a2f1faeb"}
    assert keys("other").keys() == base.keys() and not set(keys("other").values()) & set(base.values())
    changed = keys(relearn_steps=3)
    assert changed["quantize"] == base["quantize"] and changed["relearn"] != base["relearn"]
    assert keys(mia={"batch_size": 3}) == base
    assert not set(keys(mia={"k": 0.5}).values()) & set(base.values())
    monkeypatch.setattr(identity_module, "ATTACK_FORMAT", 3)
    assert not set(keys().values()) & set(base.values())
