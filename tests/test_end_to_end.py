"""End-to-end runs through the CLI: the quickstart spec and the real KnowUnDo privacy data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import SHARED_DATA, SPECS_DIR
from helpers import TINY_SPEC, one_epoch, tiny_llama
from knowundo_bench.cli import app

runner = CliRunner()


def run(spec: Path, output: Path):
    result = runner.invoke(app, ["run", str(spec), "--output", str(output), "--no-progress"])
    assert result.exit_code == 0, result.output + result.stderr
    return result


def leaderboard(output: Path) -> dict[str, dict]:
    result = runner.invoke(app, ["leaderboard", str(output), "--format", "json"])
    assert result.exit_code == 0
    return {row["method"]: row for row in json.loads(result.stdout)}


@pytest.mark.slow
def test_quickstart_meets_the_paper_pattern_and_reuses_vanilla(tmp_path):
    first = run(SPECS_DIR / "quickstart.yaml", tmp_path / "first")
    assert "trained and cached" in first.stdout + first.stderr
    rows = leaderboard(tmp_path / "first")
    assert list(rows) == ["vanilla", "ga", "ga_gd", "memflex"]
    assert [rows[m]["n_seeds"] for m in rows] == [1, 3, 3, 3]
    assert rows["vanilla"]["retention_success"] >= 95 and rows["vanilla"]["unlearn_success"] <= 5
    assert rows["ga"]["retention_success"] < 20
    for method in ("ga_gd", "memflex"):
        assert rows[method]["retention_success"] >= 40, method
        assert rows[method]["unlearn_success"] >= 80, method
    for row in rows.values():
        assert row["status"] == "ok"
    # CPU peak-RSS growth per step is allocator noise at this scale (often 0.0: below the noise floor)
    assert rows["ga"]["sec_per_step"] > 0 and rows["ga"]["peak_mem_gb"] >= 0

    memflex = json.loads((tmp_path / "first" / "memflex@0.json").read_text())  # the quickstart runs seeds 0-2
    localizer = memflex["localizer"]
    assert localizer["selected"] and set(localizer["selected"]) < set(localizer["tensors"])
    assert memflex["training"]["trainable_tensors"] == len(localizer["selected"])
    # localisation's wall time is MemFlex's cost beyond its steps (issue 28's total-cost comparison)
    assert 0 < localizer["seconds"] < memflex["wall_seconds"]
    assert memflex["spec"]["name"] == "quickstart" and "torch" in memflex["versions"]
    assert len(memflex["training"]["step_seconds"]) == memflex["training"]["steps"]

    second = run(SPECS_DIR / "quickstart.yaml", tmp_path / "second")
    assert "reused from cache" in second.stdout + second.stderr
    vanilla = json.loads((tmp_path / "second" / "vanilla.json").read_text())
    assert vanilla["vanilla"]["reused"] is True
    # Same spec and seed on CPU: identical metrics, with the cached or the fresh vanilla model.
    again = leaderboard(tmp_path / "second")
    for method, row in rows.items():
        for key in ("unlearn_success", "retention_success", "unlearn_ppl", "retention_rouge_l"):
            assert again[method][key] == row[key], (method, key)


@pytest.mark.slow
def test_real_privacy_data_ordering(tmp_path, privacy_dir):
    spec = yaml.safe_load((SPECS_DIR / "privacy-local.yaml").read_text())
    spec["data"]["path"] = str(privacy_dir)
    spec["eval"]["rouge"] = False  # ROUGE is covered by the quickstart; keep this test short
    path = tmp_path / "privacy.yaml"
    path.write_text(yaml.safe_dump(spec))
    run(path, tmp_path / "out")
    rows = leaderboard(tmp_path / "out")
    assert rows["vanilla"]["retention_success"] >= 95 and rows["vanilla"]["unlearn_success"] <= 5
    assert rows["ga"]["retention_success"] < rows["ga_gd"]["retention_success"]
    assert rows["ga"]["retention_success"] < rows["memflex"]["retention_success"]
    assert rows["ga"]["unlearn_success"] >= 80


@pytest.mark.slow
def test_hf_source_with_lora_from_local_files(tmp_path, offline_environment):
    """The hub-loading path (AutoModelForCausalLM + peft LoRA) run offline on a local folder:
    the vanilla model is base + adapter, only the adapter is cached, unlearning trains it."""
    from knowundo_bench.plugins.data.synthetic_authors import generate_authors
    from knowundo_bench.plugins.models.tiny import train_tokenizer

    corpus = [text for p in generate_authors(3) for text in (p.question, p.answer)] + ["Question: Answer:"]
    tokenizer = train_tokenizer(corpus, 400)
    base = tmp_path / "base-model"
    tiny_llama(len(tokenizer), hidden_size=32, tokenizer=tokenizer, max_position_embeddings=256).save_pretrained(base)
    tokenizer.save_pretrained(base)
    spec = {
        "name": "hf-lora",
        "data": {"source": "synthetic", "n_authors": 3},
        "model": {"source": "hf", "name_or_path": str(base), "device": "cpu", "lora": {"r": 4, "alpha": 8}},
        "vanilla": {"epochs": 4, "lr": 1e-2, "batch_size": 16, "grad_accum": 1},
        "methods": [
            {"name": "ga", "epochs": 1, "batch_size": 4, "grad_accum": 1, "lr": 1e-3},
            {
                "name": "memflex",
                "epochs": 1,
                "batch_size": 4,
                "grad_accum": 1,
                "localizer": {"name": "memflex", "sigma_percentile": 50, "n_passes": 1},
            },
        ],
        "eval": {"batch_size": 16, "max_new_tokens": 8},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    run(path, tmp_path / "out")
    rows = leaderboard(tmp_path / "out")
    assert [row["status"] for row in rows.values()] == ["ok", "ok", "ok"]
    [cached] = list((offline_environment / "knowundo_bench" / "vanilla").iterdir())
    files = {f.name for f in cached.iterdir()}
    assert "adapter_model.safetensors" in files and "model.safetensors" not in files
    memflex = json.loads((tmp_path / "out" / "memflex.json").read_text())
    assert memflex["localizer"]["tensors"] and all("lora_" in n for n in memflex["localizer"]["tensors"])
    assert set(memflex["localizer"]["selected"]) < set(memflex["localizer"]["tensors"])
    assert memflex["training"]["trainable_tensors"] == len(memflex["localizer"]["selected"])


PAPER_METHODS = ["ga", "random_labels", "adversarial", "ga_gd", "ga_gd_ood", "ga_kl", "ga_kl_ood", "memflex"]


@pytest.mark.slow
def test_paper_privacy_tiny_shows_the_papers_pattern(tmp_path, privacy_dir):
    """Tables 2-4's qualitative pattern on real privacy data (12 authors, tiny model).

    The OOD variants are held to what the paper reports for them: Retention Success as
    low as GA's (Table 2: GA+GD on OOD 2.44 vs GA 2.50; Table 3: 0.65 vs 2.77), and
    below their in-distribution counterparts ("ID rather than OOD data more effectively
    distinguishes scopes", section 4.2).
    """
    spec = yaml.safe_load((SPECS_DIR / "paper-privacy-tiny.yaml").read_text())
    spec["data"]["path"] = str(privacy_dir)
    spec["ood_retain"]["path"] = str(privacy_dir.parents[1] / "general")
    spec["eval"]["rouge"] = False
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(spec))
    run(path, tmp_path / "out")
    rows = leaderboard(tmp_path / "out")
    assert list(rows) == ["vanilla", *PAPER_METHODS]
    assert all(row["status"] == "ok" for row in rows.values())
    retention = {m: rows[m]["retention_success"] for m in PAPER_METHODS}
    unlearn = {m: rows[m]["unlearn_success"] for m in PAPER_METHODS}
    assert rows["vanilla"]["retention_success"] >= 95 and rows["vanilla"]["unlearn_success"] <= 5
    assert retention["ga"] < 20 and retention["random_labels"] < 20
    assert min(unlearn, key=unlearn.get) == "adversarial"
    for method in ("ga_gd", "memflex"):
        assert retention[method] > retention["ga"] + 20, method
    for method in ("ga_gd", "ga_kl", "memflex"):
        assert unlearn[method] >= 50, method
    # Table 2: GA+GD keeps far more than GA+KL (66.02 vs 2.30). With the official KL over
    # padded rows (docs/fidelity.md row 8) the KL term is diluted by the padding; over the
    # real tokens only, GA+KL kept as much as GA+GD (51.4 vs 56.1 here).
    assert retention["ga_kl"] < retention["ga_gd"] - 20
    assert retention["ga_gd_ood"] < 20 and retention["ga_gd_ood"] < retention["ga_gd"] - 20
    assert retention["ga_kl_ood"] < 20
    assert rows["random_labels"]["unlearn_ppl"] > 100  # random labels destroy the distribution
    assert rows["adversarial"]["unlearn_ppl"] < 100  # adversarial samples mimic it (section 4.2)


@pytest.mark.slow
def test_ablate_localization_adds_an_all_parameters_row(tmp_path):
    spec = {
        **TINY_SPEC,
        "name": "ablation",
        "eval": {"batch_size": 32, "max_new_tokens": 4, "rouge": False},
        "methods": [
            one_epoch(
                "ga_gd",
                ablate_localization=True,
                localizer={"name": "memflex_neurons", "sigma_percentile": 50, "n_passes": 1},
            )
        ],
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = run(path, tmp_path / "out")
    assert "| ga_gd-all-params |" in result.stdout
    rows = leaderboard(tmp_path / "out")
    assert list(rows) == ["vanilla", "ga_gd", "ga_gd-all-params"]
    localised = json.loads((tmp_path / "out" / "ga_gd.json").read_text())
    control = json.loads((tmp_path / "out" / "ga_gd-all-params.json").read_text())
    assert localised["localizer"]["name"] == "memflex_neurons" and control["localizer"] is None
    assert control["ablation_of"] == "ga_gd" and localised["ablation_of"] is None
    assert control["params"] == localised["params"] and control["method_seed"] == localised["method_seed"]
    assert localised["training"]["trainable_parameters"] < control["training"]["trainable_parameters"]


@pytest.mark.slow
def test_general_offline_spec_records_general_scores_prefixes_curves_and_plots(tmp_path):
    spec = yaml.safe_load((SPECS_DIR / "general-offline.yaml").read_text())
    general_dir = SHARED_DATA / "general"
    if not general_dir.is_dir():
        pytest.fail(f"shared general-task samples missing at {general_dir}")
    spec["eval"]["general_data_dir"] = str(general_dir)
    spec["eval"]["rouge"] = False
    path = tmp_path / "general.yaml"
    path.write_text(yaml.safe_dump(spec))
    run(path, tmp_path / "out")
    rows = leaderboard(tmp_path / "out")
    assert list(rows) == ["vanilla", "ga", "ga_gd", "memflex"]
    offline = ["mmlu", "arc_challenge", "truthfulqa_mc2", "social_iqa"]
    for method, row in rows.items():
        for key in offline + ["general_avg"]:
            assert isinstance(row[key], float) and 0 <= row[key] <= 100, (method, key)
        assert "race" in row and row["race"] is None  # not run: null, not missing
        assert row["general_avg"] == pytest.approx(sum(row[k] for k in offline) / 4)
        for key in ("unlearn_success@helpful_assistant", "retention_success@helpful_assistant"):
            assert isinstance(row[key], float), (method, key)

    records = {m: json.loads((tmp_path / "out" / f"{m}.json").read_text()) for m in rows}
    prefixed = records["memflex"]["metrics"]["prompt_prefixes"]["helpful_assistant"]
    assert prefixed["system_prompt"] == "You are a helpful assistant."
    vanilla = records["vanilla"]["metrics"]
    for method in ("ga", "ga_gd", "memflex"):
        curve = records[method]["curve"]
        steps = records[method]["training"]["steps"]
        assert [p["step"] for p in curve] == [*range(0, steps, 5), steps] or [p["step"] for p in curve] == list(
            range(0, steps + 1, 5)
        )
        assert curve[0]["retention_success"] == vanilla["retention"]["success"]
        assert curve[-1]["unlearn_success"] == pytest.approx(records[method]["metrics"]["unlearn"]["success"])
    assert records["ga"]["curve"][-1]["retention_success"] < 20  # GA collapses along the way

    plotted = runner.invoke(app, ["plot", str(tmp_path / "out")])
    assert plotted.exit_code == 0, plotted.output
    series = {
        Path(p).name: int(n.split()[0]) for p, n in (line.rsplit(" (", 1) for line in plotted.stdout.splitlines())
    }
    assert series == {
        "success.png": 4,
        "training_loss.png": 3,
        "curves.png": 3,
        "prompt_prefixes.png": 4,
        "general_tasks.png": 4,
    }  # vanilla and the three methods
    for name in series:
        data = (tmp_path / "out" / "plots" / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
