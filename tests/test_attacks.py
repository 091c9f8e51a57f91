"""Is the knowledge really gone (issue 27): attacks after unlearning (quantize, relearn),
membership inference against a holdout, the retrain oracle, privleak, the robustness
view, adding an attack to a finished run, and third-party attacks."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from helpers import TINY_SPEC, authors_tokenizer, one_epoch, plugin_site, two_authors
from knowundo_bench.benchmark.encoding import IGNORE_INDEX, PromptEncoder
from knowundo_bench.benchmark.pairs import Benchmark
from knowundo_bench.config.evaluation import MiaSpec
from knowundo_bench.core.errors import InputError
from knowundo_bench.evaluate.mia import TokenReadings, attack_aucs, auc, lowest_mean, membership_scores
from knowundo_bench.leaderboard import leaderboard_rows, render
from knowundo_bench.leaderboard.aggregate import privleak
from knowundo_bench.plugins.attacks.quantize import round_to_nearest
from knowundo_bench.records.files import write_record
from knowundo_bench.records.schema import ResultRecord
from knowundo_bench.run.resolution import parse_spec
from knowundo_bench.testing import plugins_with, run_spec
from test_docs import python_blocks

# 4 authors and 2 set aside, a 2-layer model that learns them (30 epochs): a run in seconds.
ATTACK_SPEC = {
    "name": "attacks",
    "seed": 0,
    "data": {"source": "synthetic", "n_authors": 4, "holdout_instances": 2},
    "model": {"source": "tiny", "device": "cpu", "hidden_size": 64, "num_layers": 2, "num_heads": 4},
    "vanilla": {"epochs": 30, "lr": 3e-3, "batch_size": 32, "grad_accum": 1, "warmup_ratio": 0.1},
    "methods": [{"name": "ga", "epochs": 2, "batch_size": 4, "grad_accum": 1, "lr": 3e-3}, "retrain"],
    "eval": {
        "batch_size": 64,
        "max_new_tokens": 8,
        "rouge": False,
        "prompt_prefixes": {},
        "attacks": [
            {"name": "quantize", "bits": 8, "label": "q8"},
            {"name": "quantize", "bits": 4, "label": "q4"},
            {"name": "relearn", "label": "relearn"},
        ],
    },
}


def records(directory: Path) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in directory.glob("*.json")}


@pytest.fixture(scope="module")
def attacked_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("attacked")
    outcome = run_spec({**ATTACK_SPEC, "cache_dir": str(out / "cache")}, out / "results")
    assert outcome.failed == []
    return out / "results"


# -- the acceptance checks ------------------------------------------------------------


@pytest.mark.slow
def test_8_bit_quantization_barely_changes_the_vanilla_model_and_4_bit_changes_its_weights_more(attacked_run):
    vanilla = records(attacked_run)["vanilla"]["metrics"]
    q8, q4 = vanilla["attacks"]["q8"], vanilla["attacks"]["q4"]
    assert abs(q8["retention"]["success"] - vanilla["retention"]["success"]) <= 3
    assert abs(q8["unlearn"]["success"] - vanilla["unlearn"]["success"]) <= 3
    # the attack did quantize: a weight error that grows with fewer bits, and a changed likelihood
    assert 0 < q8["details"]["weight_error"] < 0.02 < q4["details"]["weight_error"] < 0.3
    assert q8["details"]["layers"] == 14  # 7 linear layers per block, 2 blocks; the output head left alone
    assert q4["unlearn"]["ppl"] != vanilla["unlearn"]["ppl"]


@pytest.mark.slow
def test_relearning_a_quarter_of_the_forget_set_brings_gas_forgotten_answers_back(attacked_run):
    ga = records(attacked_run)["ga"]["metrics"]
    relearned = ga["attacks"]["relearn"]
    assert ga["unlearn"]["success"] > 95
    assert relearned["unlearn"]["success"] < ga["unlearn"]["success"] - 15  # the val answers return, never seen
    assert relearned["details"]["steps"] == 10 and relearned["details"]["pairs"] == round(0.25 * 24)
    assert relearned["mia"]["members"] == 24 - 6  # the retaught pairs are no evidence of memory
    rows = {row["method"]: row for row in leaderboard_rows(attacked_run)}
    assert rows["ga"]["recovery@relearn"] == pytest.approx(ga["unlearn"]["success"] - relearned["unlearn"]["success"])


@pytest.mark.slow
def test_the_oracle_never_learned_the_unlearn_scope_and_kept_the_retention_scope(attacked_run):
    found = records(attacked_run)
    vanilla, oracle = found["vanilla"]["metrics"], found["retrain"]["metrics"]
    assert found["retrain"]["oracle"] and found["retrain"]["method_name"] == "retrain"
    assert oracle["unlearn"]["success"] > vanilla["unlearn"]["success"] + 50
    assert oracle["retention"]["success"] > vanilla["retention"]["success"] - 10
    assert found["retrain"]["vanilla"]["key"] != found["vanilla"]["vanilla"]["key"]  # a model of its own


@pytest.mark.slow
def test_membership_inference_tells_the_vanilla_models_members_and_not_the_oracles(attacked_run):
    found = records(attacked_run)
    vanilla, oracle = found["vanilla"]["metrics"]["mia"], found["retrain"]["metrics"]["mia"]
    # members: 4 authors x 3 Unlearn attributes x 2 train phrasings; non-members: 2 x 3 x 3 (both splits)
    assert vanilla["members"] == 24 and vanilla["non_members"] == 18
    for attack in ("loss", "zlib", "mink", "minkpp"):
        assert vanilla[f"auc_{attack}"] > 0.95 and vanilla[f"auc_{attack}"] > oracle[f"auc_{attack}"] + 0.15, attack
    rows = {row["method"]: row for row in leaderboard_rows(attacked_run)}
    assert rows["retrain"]["privleak"] == 0
    reference = 1 - oracle["auc_mink"]
    assert rows["vanilla"]["privleak"] == pytest.approx(((1 - vanilla["auc_mink"]) - reference) / reference * 100)
    assert rows["vanilla"]["privleak"] < -50  # the vanilla model leaks its members
    assert rows["retrain"]["avg_success_not_below_best"] is None  # a reference, not a candidate


@pytest.mark.slow
def test_the_robustness_view_shows_each_attacks_recovery(attacked_run):
    text = render(leaderboard_rows(attacked_run), "md", "robustness")
    assert "| Method | Unlearn Succ↑ | Unlearn Succ@q8↑ | Recovery@q8↓ |" in text
    assert "| retrain |" in text and "PrivLeak" in text
    shown = json.loads(render(leaderboard_rows(attacked_run), "json", "robustness"))
    assert {"recovery@q4", "recovery@relearn", "privleak", "mia_auc_mink"} <= set(shown[0])
    assert "unlearn_ppl" not in shown[0]


@pytest.mark.slow
def test_adding_an_attack_to_a_finished_run_computes_only_the_attack(attacked_run, tmp_path):
    import shutil

    results = tmp_path / "results"
    shutil.copytree(attacked_run, results)
    before = records(results)
    spec = {**ATTACK_SPEC, "cache_dir": str(attacked_run.parent / "cache")}
    spec["eval"] = {
        **spec["eval"],
        "attacks": [*spec["eval"]["attacks"][1:], {"name": "relearn", "data": "retention", "label": "benign"}],
    }
    run_spec(spec, results)
    after = records(results)
    for label in ("vanilla", "ga", "retrain"):
        old, new = before[label], after[label]
        assert new["metrics"]["unlearn"] == old["metrics"]["unlearn"]  # not re-measured
        assert new["unit_key"] == old["unit_key"] and new["wall_seconds"] == old["wall_seconds"]
        assert new["metrics"]["attacks"]["q4"] == old["metrics"]["attacks"]["q4"]  # kept as it was
        assert set(new["metrics"]["attacks"]) == {"q4", "relearn", "benign"}  # q8 left the spec
        assert new["metrics"]["attacks"]["benign"]["details"]["data"] == "retention"
    assert after["ga"]["training"] == before["ga"]["training"]


# -- formulas against hand computations -------------------------------------------------


def test_round_to_nearest_matches_a_hand_computation():
    weight = torch.tensor([[0.6, -1.0, 0.25, 0.1, 0.3]])
    # 4 bits: 7 levels each side; groups of 2 columns: [0.5, -1], [0.25, 0.1], [0.3] (the last padded)
    expected = [4 / 7, -1.0, 0.25, 3 * 0.25 / 7, 0.3]
    assert round_to_nearest(weight, 4, 2)[0].tolist() == pytest.approx(expected, abs=1e-7)
    random = torch.randn(16, 300, generator=torch.Generator().manual_seed(0))
    error = {bits: float((random - round_to_nearest(random, bits, 128)).norm() / random.norm()) for bits in (4, 8)}
    assert 0 < error[8] < error[4] / 10
    assert torch.equal(round_to_nearest(torch.zeros(2, 4), 4, 2), torch.zeros(2, 4))


def test_lowest_mean_auc_and_privleak_match_hand_computations():
    assert lowest_mean([-1.0, -2.0, -3.0, -4.0, -5.0], 0.4) == -4.5  # int(5 * 0.4) = 2 lowest
    assert lowest_mean([-1.0, -2.0], 0.4) == -2.0  # at least one
    assert auc([3.0, 2.0], [1.0, 2.0]) == (1 + 1 + 1 + 0.5) / 4
    assert auc([0.0], [1.0]) == 0.0
    assert privleak(0.9, 0.6) == pytest.approx((0.1 - 0.4) / 0.4 * 100)  # MUSE's 1 - AUC, as open-unlearning
    assert privleak(0.9, 1.0) is None
    assert privleak(0.9, None) is None and privleak(None, 0.6) is None
    readings = TokenReadings(log_probs=(-1.0, -3.0, -2.0), standardised=(0.5, -1.5, 0.0))
    scores = membership_scores(readings, "abc", 0.4)
    import zlib

    assert scores == {
        "loss": -2.0,
        "zlib": -2.0 / len(zlib.compress(b"abc")),
        "mink": -3.0,
        "minkpp": -1.5,
    }


class TableModel(torch.nn.Module):
    """A stub language model: the next-token logits depend on the current token only
    (``table[token]``)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.table[input_ids])


def hand_scores(table: torch.Tensor, encoder: PromptEncoder, pair, k: float) -> dict[str, float]:
    """The four scores of one pair, by explicit sums over the vocabulary in Python floats."""
    example = encoder.encode_all([pair], with_eos=False)[0]
    ids, labels = list(example.input_ids), list(example.labels)
    log_probs, standardised = [], []
    for t in range(1, len(ids)):
        if labels[t] == IGNORE_INDEX:
            continue
        row = [float(v) for v in table[ids[t - 1]]]
        top = max(row)
        norm = top + math.log(sum(math.exp(v - top) for v in row))
        logp = [v - norm for v in row]
        mean = sum(math.exp(lp) * lp for lp in logp)
        variance = sum(math.exp(lp) * lp * lp for lp in logp) - mean * mean
        log_probs.append(logp[labels[t]])
        standardised.append((logp[labels[t]] - mean) / math.sqrt(variance))
    count = max(1, int(len(log_probs) * k))
    import zlib

    return {
        "loss": sum(log_probs) / len(log_probs),
        "zlib": sum(log_probs) / len(log_probs) / len(zlib.compress(pair.answer.encode())),
        "mink": sum(sorted(log_probs)[:count]) / count,
        "minkpp": sum(sorted(standardised)[:count]) / count,
    }


def rank_auc(members: list[float], non_members: list[float]) -> float:
    """The Mann-Whitney U from rank sums (average ranks for ties), over n1 n0."""
    values = sorted(members + non_members)
    rank = {v: (2 * values.index(v) + values.count(v) + 1) / 2 for v in values}
    u = sum(rank[v] for v in members) - len(members) * (len(members) + 1) / 2
    return u / (len(members) * len(non_members))


def test_each_membership_inference_auc_matches_a_hand_computation_on_a_stub_model():
    pairs, forget, _ = two_authors()
    tokenizer = authors_tokenizer(pairs)
    encoder = PromptEncoder(tokenizer, 128)
    table = torch.randn(len(tokenizer), len(tokenizer), generator=torch.Generator().manual_seed(1)) * 3
    model = TableModel(table)
    non_members = [p for p in pairs if p.scope == "unlearn" and p.split == "val"]
    found, counts = attack_aucs(model, encoder, forget, non_members, MiaSpec(k=0.4, batch_size=3))
    assert counts == (len(forget), len(non_members))
    by_hand = {
        attack: rank_auc(
            [hand_scores(table, encoder, p, 0.4)[attack] for p in forget],
            [hand_scores(table, encoder, p, 0.4)[attack] for p in non_members],
        )
        for attack in ("loss", "zlib", "mink", "minkpp")
    }
    assert found == pytest.approx(by_hand, abs=1e-9)
    assert len(set(by_hand.values())) > 1  # the four attacks read different things


def write(directory: Path, label: str, **fields) -> None:
    record = ResultRecord.model_validate({"run": "r", "method": label.split("@")[0], "unit": label, **fields})
    write_record(directory, label, record)


def test_privleak_is_each_seeds_min_k_auc_against_the_oracle_with_an_interval(tmp_path):
    def mia(value: float, attacked: float | None = None) -> dict:
        attacks = {} if attacked is None else {"relearn": {"unlearn": {"success": 40.0}, "mia": {"auc_mink": attacked}}}
        return {"unlearn": {"success": 50.0}, "mia": {"auc_mink": value, "auc_loss": value}, "attacks": attacks}

    write(tmp_path, "vanilla", method_name="vanilla", order=0, seed=0, metrics=mia(0.95, 0.9))
    write(tmp_path, "retrain", method_name="retrain", oracle=True, order=1, seed=0, metrics=mia(0.5, 0.8))
    for seed, value in ((1, 0.6), (2, 0.7), (3, 0.8)):
        write(tmp_path, f"ga@{seed}", method_name="ga", order=2, seed=seed, metrics=mia(value))
    rows = {row["method"]: row for row in leaderboard_rows(tmp_path)}
    assert rows["vanilla"]["privleak"] == pytest.approx((0.05 - 0.5) / 0.5 * 100)  # -90: membership leaks
    assert rows["ga"]["privleak"] == pytest.approx(-40.0)  # mean of -20, -40, -60
    low, high = rows["ga"]["privleak_ci95"]
    assert low < -40 < high and rows["ga"]["mia_auc_mink_ci95"] is not None
    assert rows["retrain"]["privleak"] == 0
    # an attacked row against the oracle under the same attack: ((1 - 0.9) - 0.2) / 0.2
    assert rows["vanilla"]["privleak@relearn"] == pytest.approx(-50.0)
    assert rows["vanilla"]["recovery@relearn"] == pytest.approx(10.0)


def test_without_a_holdout_or_an_oracle_the_mia_columns_are_null(tmp_path):
    write(tmp_path, "vanilla", method_name="vanilla", order=0, metrics={"unlearn": {"success": 1.0}})
    write(tmp_path, "ga", method_name="ga", order=1, metrics={"unlearn": {"success": 2.0}, "mia": {"auc_mink": 0.7}})
    rows = {row["method"]: row for row in leaderboard_rows(tmp_path)}
    assert rows["vanilla"]["mia_auc_mink"] is None and rows["vanilla"]["privleak"] is None
    assert rows["ga"]["mia_auc_mink"] == 0.7 and rows["ga"]["privleak"] is None  # no oracle


# -- specs: holdout, oracle and attacks validated ----------------------------------------


def resolve(**changes):
    spec = {**TINY_SPEC, **changes}
    return parse_spec(spec, plugins_with())


@pytest.mark.parametrize(
    ("evaluation", "message"),
    [
        ({"attacks": [{"name": "quantise"}]}, "unknown attack 'quantise'; did you mean 'quantize'?"),
        ({"attacks": [{"name": "quantize", "bits": 3}]}, "eval.attacks.0.bits"),
        ({"attacks": [{"name": "relearn", "stpes": 3}]}, "eval.attacks.0.stpes"),
        ({"attacks": ["quantize", "quantize"]}, "label 'quantize' is used twice"),
        ({"attacks": [{"name": "quantize", "label": "x y"}]}, "use letters, digits and '_'"),
        ({"attacks": [{"name": "quantize", "label": "p"}], "prompt_prefixes": {"p": "Hi."}}, "also a prompt prefix"),
        ({"mia": {"k": 0}}, "eval.mia.k"),
    ],
)
def test_a_bad_attack_or_mia_entry_is_one_line_naming_the_field(evaluation, message):
    with pytest.raises(InputError) as error:
        resolve(eval={**TINY_SPEC["eval"], **evaluation})
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_oracle_takes_no_localizer_guard_or_ablation():
    with pytest.raises(InputError, match=r"methods.0.localizer: retrain is an oracle"):
        resolve(methods=[{"name": "retrain", "localizer": "memflex"}])
    resolved = resolve(methods=["retrain"], vanilla={**TINY_SPEC["vanilla"], "epochs": 5})
    assert resolved.methods[0].vanilla.unlearn_scope == "exclude" and resolved.methods[0].vanilla.epochs == 5


def test_a_holdout_is_set_aside_from_the_data_and_never_trained_on(privacy_dir):
    from knowundo_bench.run.inputs import load_benchmark

    plugins = plugins_with()
    synthetic = load_benchmark(resolve(data={"source": "synthetic", "n_authors": 3, "holdout_instances": 2}), plugins)
    assert len(synthetic.instances) == 3 and len({p.instance for p in synthetic.holdout}) == 2
    assert not {p.instance for p in synthetic.holdout} & set(synthetic.instances)
    assert all(p.scope == "unlearn" for p in synthetic.non_members) and synthetic.non_members
    local = {"source": "local", "path": str(privacy_dir), "instances": 5, "holdout_instances": 3}
    benchmark = load_benchmark(resolve(data=local), plugins)
    assert len(benchmark.instances) == 5 and len({p.instance for p in benchmark.holdout}) == 3
    unheld = load_benchmark(resolve(data={**local, "holdout_instances": None}), plugins)
    assert unheld.instances == benchmark.instances and unheld.fingerprint() != benchmark.fingerprint()
    assert Benchmark(unheld.pairs).fingerprint() == unheld.fingerprint()  # no holdout: keys as before
    with pytest.raises(InputError, match="data.holdout_instances: 10000 instances set aside leave too few"):
        load_benchmark(resolve(data={**local, "instances": None, "holdout_instances": 10000}), plugins)
    assert synthetic.trained_pairs("exclude") and all(
        p.scope == "retention" for p in synthetic.trained_pairs("exclude")
    )


def test_attacks_are_not_in_the_units_reuse_key():
    from knowundo_bench.run.identity import Provenance
    from knowundo_bench.run.plan import plan_units

    plain = resolve(methods=[{"name": "ga"}])
    attacked = resolve(methods=[{"name": "ga"}], eval={**TINY_SPEC["eval"], "attacks": ["quantize"]})
    keys = [
        Provenance.of(r, plugins_with(), "data").unit_key("vanilla-key", plan_units(r)[1]) for r in (plain, attacked)
    ]
    assert keys[0] == keys[1]
    provenance = Provenance.of(attacked, plugins_with(), "data")
    assert provenance.attack_keys("a") != provenance.attack_keys("b")


# -- attacks that fail, third-party attacks ------------------------------------------------


def test_an_attack_that_fails_is_recorded_in_its_section_and_the_unit_stays_ok(tmp_path):
    spec = {**TINY_SPEC, "cache_dir": str(tmp_path / "cache"), "methods": []}
    spec["eval"] = {**TINY_SPEC["eval"], "attacks": [{"name": "quantize", "backend": "bnb"}, "relearn"]}
    run_spec(spec, tmp_path / "out")
    vanilla = records(tmp_path / "out")["vanilla"]
    assert vanilla["status"] == "ok"
    assert "needs a CUDA device" in vanilla["metrics"]["attacks"]["quantize"]["error"]
    assert vanilla["metrics"]["attacks"]["relearn"]["unlearn"]["success"] is not None
    run_spec(spec, tmp_path / "out")  # a plain rerun keeps the failed section: no retry loop
    again = records(tmp_path / "out")["vanilla"]
    assert (
        again["metrics"]["attacks"] == vanilla["metrics"]["attacks"] and again["finished_at"] == vanilla["finished_at"]
    )


def test_the_attack_example_of_the_plugin_guide_runs(tmp_path):
    module = types.ModuleType("noise_attack")
    exec(python_blocks("register_attacks")[0], module.__dict__)
    spec = {**TINY_SPEC, "cache_dir": str(tmp_path / "cache")}
    spec["eval"] = {**TINY_SPEC["eval"], "attacks": [{"name": "noise", "scale": 0.5}]}
    run_spec(spec, tmp_path / "out", module)
    vanilla = records(tmp_path / "out")["vanilla"]["metrics"]
    noisy = vanilla["attacks"]["noise"]
    assert noisy["details"] == {"scale": 0.5} and noisy["unlearn"]["ppl"] != vanilla["unlearn"]["ppl"]


THIRD_PARTY_ATTACK = '''
"""A third-party attack: scale every weight."""
from knowundo_bench.api import AttackInfo, AttackOutcome, Params, hookimpl


class ScaleParams(Params):
    factor: float = 0.9


def apply(params, model, context):
    for parameter in model.parameters():
        parameter.data.mul_(params.factor)
    return AttackOutcome(details={"factor": params.factor})


@hookimpl
def register_attacks():
    return [AttackInfo(name="shrink", description="Scales every weight (third party).", params=ScaleParams,
                       apply=apply)]
'''


@pytest.mark.slow
def test_a_third_party_attack_registers_through_its_entry_point_and_attacks_a_run(tmp_path):
    site = plugin_site(tmp_path / "site", "knowundo_shrink", THIRD_PARTY_ATTACK, "knowundo-shrink", "0.2.0", "shrink")
    env = {**os.environ, "COLUMNS": "250", "PYTHONPATH": str(site)}

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "knowundo_bench", *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    listing = cli("methods")
    assert listing.returncode == 0, listing.stderr
    assert "Attacks" in listing.stdout and "quantize" in listing.stdout and "relearn" in listing.stdout
    line = next(row for row in listing.stdout.splitlines() if "shrink" in row)
    assert "knowundo-shrink 0.2.0" in line
    spec = {**TINY_SPEC, "eval": {**TINY_SPEC["eval"], "attacks": [{"name": "shrink", "factor": 0.5}]}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = cli("run", "spec.yaml", "--output", "out", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "Unlearn Succ@shrink" in result.stdout
    board = cli("leaderboard", "out", "--view", "robustness")
    assert board.returncode == 0 and "Recovery@shrink" in board.stdout
    vanilla = records(tmp_path / "out")["vanilla"]
    assert vanilla["metrics"]["attacks"]["shrink"]["details"] == {"factor": 0.5}


def test_attacks_are_refused_under_a_multi_process_launch(monkeypatch, tmp_path):
    """Only the main process evaluates: a relearning there would wait for the others."""
    from knowundo_bench.core.progress import ProgressBoard
    from knowundo_bench.run.runner import Runner

    monkeypatch.setenv("WORLD_SIZE", "2")
    resolved = resolve(eval={**TINY_SPEC["eval"], "attacks": ["relearn"]})
    runner = Runner(resolved, plugins_with(), tmp_path, ProgressBoard(enabled=False))
    with pytest.raises(InputError, match="eval.attacks: not under a multi-process launch"):
        runner.start_processes()


def test_a_worker_adds_attacks_to_its_own_units_only_and_keeps_the_drivers_keys(tmp_path):
    """A Ray worker rebuilds the spec from its echo: the units' keys must be the driver's
    (else nothing is reused), and it completes only the units it was given."""
    from knowundo_bench.plugin.execution import SuitePayload
    from knowundo_bench.run.worker import run_in_worker

    spec = {**TINY_SPEC, "cache_dir": str(tmp_path / "cache"), "methods": [one_epoch("ga")]}
    spec["eval"] = {**TINY_SPEC["eval"], "attacks": [{"name": "quantize", "bits": 8}]}
    run_spec(spec, tmp_path / "out")
    before = records(tmp_path / "out")
    spec["eval"]["attacks"].append({"name": "quantize", "bits": 4, "label": "q4"})
    resolved = resolve(**{key: value for key, value in spec.items() if key != "name"})
    assert parse_spec(resolved.echo(), plugins_with()).spec.eval.unit_identity() == resolved.spec.eval.unit_identity()
    payload = SuitePayload(
        spec=resolved.echo(),
        source="spec",
        overrides=(),
        output_dir=str(tmp_path / "out"),
        cache_dir=str(tmp_path / "cache"),
    )
    [result] = run_in_worker(payload, ["ga"], 1)
    after = records(tmp_path / "out")
    assert result.label == "ga" and result.status == "ok"
    assert set(after["ga"]["metrics"]["attacks"]) == {"quantize", "q4"}  # its unit: completed
    assert after["ga"]["metrics"]["unlearn"] == before["ga"]["metrics"]["unlearn"]  # reused, not re-measured
    assert after["vanilla"] == before["vanilla"]  # a sibling's unit: left to its own task


def test_attacks_leave_the_model_they_attack_untouched(tmp_path):
    """An attack works on a copy: the vanilla model a method then starts from, and the
    method's own numbers, are the same with attacks as without."""
    spec = {**TINY_SPEC, "cache_dir": str(tmp_path / "cache"), "methods": [one_epoch("ga")]}
    run_spec(spec, tmp_path / "plain")
    attacked = {**spec, "eval": {**TINY_SPEC["eval"], "attacks": [{"name": "quantize", "bits": 4}, "relearn"]}}
    run_spec(attacked, tmp_path / "attacked")
    plain, with_attacks = records(tmp_path / "plain")["ga"], records(tmp_path / "attacked")["ga"]
    assert with_attacks["training"]["step_losses"] == plain["training"]["step_losses"]
    assert with_attacks["metrics"]["unlearn"] == plain["metrics"]["unlearn"]
    assert with_attacks["metrics"]["retention"] == plain["metrics"]["retention"]
