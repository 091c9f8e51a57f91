"""The benchmark scripts run (their figures are for people, not assertions), and the
property the MemFlex speed-up rests on: back-propagation stops below the lowest
trainable layer."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import tiny_llama
from knowundo_bench.benchmark.encoding import Encoded, PromptEncoder
from knowundo_bench.config.params import TrainingParams
from knowundo_bench.plugins.models.tiny import train_tokenizer
from knowundo_bench.train.loop import make_epoch_batches, train

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_table5_tiny_prints_a_row_per_method():
    from knowundo_bench.plugin.manager import Plugins, make_plugin_manager

    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "table5.py"), "--tiny", "--steps", "2"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("| ")}
    registry = Plugins(make_plugin_manager(load_entry_points=False)).methods
    methods = [name for name, (info, _) in registry.entries.items() if issubclass(info.params, TrainingParams)]
    assert set(methods) <= set(rows) and "none" not in rows  # every method that trains
    for method in methods:
        cells = [c.strip() for c in rows[method].split("|")[2:-1]]
        assert float(cells[0]) > 0 and float(cells[2]) > 0, rows[method]  # s/step, tokens/s
    assert rows["ga"].split("|")[6].strip() == "1.00"  # GA against itself
    assert "LoRA r=8" in result.stdout and "sequence 256, batch 1 x 16" in result.stdout


def test_backprop_stops_below_the_lowest_trainable_layer():
    tokenizer = train_tokenizer(["Question: who wrote it? Answer: Ann Lee wrote it."] * 4, 300)
    model = tiny_llama(len(tokenizer), hidden_size=16, tokenizer=tokenizer, num_hidden_layers=3)
    reached = []
    for index, layer in enumerate(model.model.layers):
        layer.register_full_backward_hook(lambda module, grad_in, grad_out, index=index: reached.append(index))
    encoder = PromptEncoder(tokenizer, 32)
    example = Encoded(tuple(range(5, 15)), (-100,) * 3 + tuple(range(8, 15)), 3)
    batches = make_epoch_batches(encoder, [example] * 4, None, 2, random.Random(0))
    top = {name for name, _ in model.named_parameters() if ".layers.2." in name}
    train(
        model,
        objective=lambda m, b: m(**b["forget"]).loss,
        params=TrainingParams(epochs=1, grad_accum=1, batch_size=2),
        epoch_batches=lambda epoch: batches,
        seed=0,
        trainable=top,
    )
    assert set(reached) == {2}  # layers 0 and 1 hold nothing to train: autograd never enters them
    reached.clear()
    train(
        model,
        objective=lambda m, b: m(**b["forget"]).loss,
        params=TrainingParams(epochs=1, grad_accum=1, batch_size=2),
        epoch_batches=lambda epoch: batches,
        seed=0,
    )
    assert set(reached) == {0, 1, 2}
    assert all(p.requires_grad for p in model.parameters())  # frozen only for the duration


def test_efficiency_benchmark_script_documents_its_figures():
    text = (ROOT / "benchmarks" / "efficiency.py").read_text()
    for name in (
        "memflex_vs_ga_gd_step_ratio",
        "memflex_step_bound",
        "harness_vs_bare_loop_ratio",
        "batched_eval_speedup",
        "localize_vs_epoch_ratio",
        "localize_fast_vs_epoch_ratio",
        "localize_fast_agreement",
        "ga_gd_vs_hf_trainer_step_ratio",
    ):
        assert f'print(f"{name}=' in text, name
    assert "bench:" in (ROOT / "Makefile").read_text()


def test_hf_trainer_peer_takes_the_harness_steps_with_the_harness_losses():
    """The peer arm compares like with like: the same optimizer steps, per-step losses and
    final weights as the harness's GA+GD (stacked windows) on the same micro-batches.
    Fails if the peer shuffles, scales the loss differently or drops a part."""
    from helpers import authors_model, authors_tokenizer, two_authors
    from knowundo_bench.plugins.methods.ga_gd import weighted_objective
    from knowundo_bench.train.loop import make_mixed_batches, mixed_dataset

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from hf_trainer_peer import train_with_hf_trainer
    finally:
        sys.path.pop(0)
    pairs, forget, retain = two_authors()
    tokenizer = authors_tokenizer(pairs)
    encoder = PromptEncoder(tokenizer, 96, prompt_format="raw")
    items = mixed_dataset(encoder.encode_all(forget), encoder.encode_all(retain), 1, random.Random(0))
    batches = make_mixed_batches(encoder, items, 1)
    params = TrainingParams(epochs=1, lr=1e-3, batch_size=1, grad_accum=4)
    ours, theirs = authors_model(tokenizer), authors_model(tokenizer)
    report = train(
        ours,
        objective=weighted_objective(-1.0, 1.0),
        params=params,
        epoch_batches=lambda epoch: batches,
        seed=0,
        warmup_steps=math.ceil(0.03 * math.ceil(len(batches) / 4)),
    )
    seconds, losses = train_with_hf_trainer(theirs, batches, params, -1.0, 1.0)
    assert len(seconds) == len(losses) == len(report.step_losses) == math.ceil(len(batches) / 4)
    assert losses == pytest.approx(report.step_losses, rel=1e-4, abs=1e-5)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_gpu_check_runs_on_cpu_skipping_the_gpu_parts(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("on a GPU the check runs for real (minutes)")
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("no CUDA device: skipped") == 6
    for part in (
        "cuda unit tests",
        "table5 7B",
        "table5 7B padding free",
        "table5 7B padding to the longest",
        "smollm2 privacy on cuda",
        "ray executor, num_gpus 1",
    ):
        assert part in result.stdout


def test_gpu_check_smollm2_spec_is_a_valid_spec_on_cuda(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    from knowundo_bench.plugin.manager import get_plugins
    from knowundo_bench.run.resolution import load_spec

    resolved = load_spec(gpu_check.smollm2_spec(tmp_path), get_plugins())
    assert resolved.spec.model.device == "cuda" and resolved.spec.model.source == "gguf"
    assert [m.info.name for m in resolved.methods] == ["ga_gd", "memflex"]


def test_scale_replays_the_ray_schedule():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import scale
    finally:
        sys.path.pop(0)
    tasks = [
        scale.Task("vanilla", 10.0, None),
        scale.Task("a", 6.0, "vanilla"),
        scale.Task("b", 4.0, "vanilla"),
        scale.Task("c", 3.0, "vanilla"),
        scale.Task("d", 3.0, "vanilla"),
    ]
    assert scale.makespan(tasks, 1) == 26.0  # serial
    assert scale.makespan(tasks, 2) == 19.0  # a and b at 10; c after b (14-17), d after a (16-19)
    assert scale.makespan(tasks, 4) == 16.0  # the vanilla model, then the longest unit
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "scale.py"), str(ROOT / "tests" / "fixtures" / "records-schema1")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "| 1 |" in result.stdout and "| 64 |" in result.stdout and "= 164 units (4 vanilla)" in result.stdout


def test_scale_takes_its_unit_costs_from_table5_output(tmp_path):
    """A unit is its method's s/step times its privacy steps (50 forget-only, 100 mixed),
    plus the evaluation; the vanilla unit 170 steps at 4 x GA's s/step."""
    table = tmp_path / "table5.txt"
    table.write_text(
        "# Table 5 layout: LLaMA-2-7B shape\n"
        "| Method | s/step | peak GB | tokens/s | MFU | s/step vs GA | memory vs GA | passes/step |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|\n"
        "| ga | 2.000 | 15.0 | 2048 | 40.0% | 1.00 | 1.00 | 1 |\n"
        "| ga_gd | 3.000 | 15.5 | 2048 | 40.0% | 1.50 | 1.03 | 1 |\n"
    )
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import scale
    finally:
        sys.path.pop(0)
    vanilla, methods = scale.table5_costs(table, eval_seconds=10.0)
    assert vanilla == 4 * 2.0 * 170 + 10.0
    assert methods == {"ga": 2.0 * 50 + 10.0, "ga_gd": 3.0 * 100 + 10.0}
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--table5", str(table), "--workers", "1", "8"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "not in the records (median cost used)" in result.stdout and "| 8 |" in result.stdout
    both = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "scale.py")], capture_output=True, text=True, timeout=120
    )
    assert both.returncode == 2 and "give a results directory or --table5 FILE" in both.stderr
