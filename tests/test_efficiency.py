"""Step measurement on CPU (the CUDA path is in test_training, skipped without a GPU)
and the leaderboard's efficiency view (Table 5's layout)."""

from __future__ import annotations

import csv
import io
import json
import sys

import pytest
import torch
from typer.testing import CliRunner

from knowundo_bench.cli import app
from knowundo_bench.config.spec import EfficiencySpec
from knowundo_bench.records.files import write_record
from knowundo_bench.records.memory import CPU_RSS_NOISE_FLOOR_GB
from knowundo_bench.train.efficiency import StepMeter, localised_matmuls, memflex_step_bound, peak_flops


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-step peak reset needs /proc")
def test_cpu_meter_sees_memory_allocated_inside_the_step_only():
    meter = StepMeter(torch.device("cpu"))
    held = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB, allocated before the step: not the step's growth
    meter.start()
    block = torch.ones(256 * 1024 * 1024 // 4)  # 256 MiB inside the step, then released
    block.add_(1)
    del block
    meter.stop()
    meter.start()
    meter.stop()  # an empty step right after: the peak was reset, so no growth
    seconds = meter.finish()
    assert len(seconds) == 2 and all(s >= 0 for s in seconds)
    assert 0.2 <= meter.peaks_gb[0] <= 0.4, meter.peaks_gb
    assert meter.peaks_gb[1] < 0.05, meter.peaks_gb
    del held


def test_memflex_step_bound_counts_forward_input_and_selected_weight_gradients():
    weights = {"a": 100, "b": 300, "head": 600}  # F = 1000: GA+GD's step is 3F = 3000
    assert memflex_step_bound(weights, {"b"}) == pytest.approx((1000 + 1000 + 300) / 3000)  # (2 + s) / 3
    assert memflex_step_bound(weights, {"b", "norm", "embed"}) == memflex_step_bound(weights, {"b"})  # no matmuls
    assert memflex_step_bound(weights, set(weights)) == 1.0
    # nothing below "b" trains: no input gradient for "a" (and none computed below it)
    assert memflex_step_bound(weights, {"b", "head"}, input_grad={"b", "head"}) == pytest.approx(
        (1000 + 900 + 900) / 3000
    )
    assert memflex_step_bound(weights, {"head"}, input_grad=set()) == pytest.approx((1000 + 600) / 3000)
    with pytest.raises(ValueError, match="not weight matmuls"):
        memflex_step_bound(weights, {"b"}, input_grad={"norm"})
    with pytest.raises(ValueError, match="no weight matmuls"):
        memflex_step_bound({}, set())


def _two_layer_llama():
    from helpers import tiny_llama

    return tiny_llama(50, hidden_size=16, num_hidden_layers=2, attn_implementation="eager")


def _inputs():
    torch.manual_seed(0)
    return {"input_ids": torch.randint(3, 50, (2, 7)), "attention_mask": torch.ones(2, 7, dtype=torch.long)}


def test_localised_matmuls_see_where_back_propagation_stops():
    model = _two_layer_llama()
    model.model.norm.weight.requires_grad_(False)  # frozen by the caller: stays so
    weights, everything = localised_matmuls(model, _inputs(), {n for n, _ in model.named_parameters()})
    linears = {n for n, p in model.named_parameters() if p.dim() == 2 and "embed_tokens" not in n}
    assert set(weights) == linears and everything == linears
    assert weights["lm_head.weight"] == 50 * 16 and weights["model.layers.1.mlp.up_proj.weight"] == 32 * 16
    top = {n for n in linears if ".layers.1." in n} | {"lm_head.weight"}
    assert localised_matmuls(model, _inputs(), top)[1] == top - {
        f"model.layers.1.self_attn.{x}_proj.weight" for x in "qkv"
    }  # their input is layer 0's output, which nothing below needs a gradient for
    # v_proj in layer 0: q and k beside it get no input gradient; everything after it does
    beside = {f"model.layers.0.self_attn.{x}_proj.weight" for x in "qkv"}
    assert localised_matmuls(model, _inputs(), {"model.layers.0.self_attn.v_proj.weight"})[1] == linears - beside
    # layer 0's input norm trains: the gradient must reach layer 0's first matmuls
    assert localised_matmuls(model, _inputs(), {"model.layers.0.input_layernorm.weight"})[1] == linears
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == ["model.norm.weight"]


@pytest.mark.parametrize(
    "selected",
    [
        {"lm_head.weight"},
        {"model.layers.1.mlp.up_proj.weight", "model.layers.1.self_attn.v_proj.weight", "lm_head.weight"},
        {"model.layers.0.self_attn.v_proj.weight", "model.layers.1.mlp.down_proj.weight"},
        {"model.layers.0.input_layernorm.weight", "model.layers.1.self_attn.o_proj.weight", "model.norm.weight"},
        {"model.embed_tokens.weight"},
    ],
)
def test_memflex_step_bound_is_torchs_count_of_matmul_flops(selected):
    """The bound against torch's FLOP counter over one forward and backward: its weight
    matmuls (``mm``; eager attention's weightless products are ``bmm``), with only
    ``selected`` requiring a gradient, over the same with everything training."""
    from torch.utils.flop_counter import FlopCounterMode

    model = _two_layer_llama()
    inputs = _inputs()

    def matmul_flops(trainable: set[str]) -> int:
        for name, p in model.named_parameters():
            p.requires_grad_(name in trainable)
        with FlopCounterMode(display=False) as counter:
            model(**inputs, labels=inputs["input_ids"]).loss.backward()
        model.zero_grad(set_to_none=True)
        return sum(
            flops
            for op, flops in counter.get_flop_counts()["Global"].items()
            if "mm" in str(op) and "bmm" not in str(op)
        )

    counted = matmul_flops(selected) / matmul_flops({n for n, _ in model.named_parameters()})
    for p in model.parameters():
        p.requires_grad_(True)
    weights, input_grad = localised_matmuls(model, inputs, selected)
    assert memflex_step_bound(weights, selected, input_grad) == pytest.approx(counted, rel=1e-12)


def test_peak_flops_from_spec_or_none_on_cpu():
    assert peak_flops(torch.device("cpu"), EfficiencySpec()) is None
    assert peak_flops(torch.device("cpu"), EfficiencySpec(peak_tflops=312)) == 312e12


def training(sec: float, gb: float, tps: float, device: str = "cpu") -> dict:
    cuda = device != "cpu"
    return {
        "sec_per_step": sec,
        "sec_per_step_p90": sec * 1.1,
        "peak_mem_gb": gb,
        "tokens_per_sec": tps,
        "mfu": 0.25 if cuda else None,
        "memory_kind": "cuda_max_allocated" if cuda else "cpu_peak_rss_growth",
        "device": device,
    }


def ga_and_memflex(directory, ga_gb: float, memflex_gb: float, device: str = "cpu") -> None:
    """A run's records: vanilla, GA at 2 s/step and ``ga_gb``, MemFlex at 1.5 s/step and ``memflex_gb``."""
    write_record(directory, "vanilla", {"method": "vanilla", "order": 0, "status": "ok", "metrics": {}})
    for order, (name, sec, gb) in enumerate((("ga", 2.0, ga_gb), ("memflex", 1.5, memflex_gb)), 1):
        body = {"method": name, "method_name": name, "order": order, "status": "ok"}
        write_record(directory, name, {**body, "training": training(sec, gb, 100.0 / sec, device)})


def leaderboard(*arguments) -> str:
    result = CliRunner().invoke(app, ["leaderboard", *map(str, arguments)])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_mfu_of_several_processes_is_against_all_their_devices():
    """Tokens are every process's, seconds one process's: MFU over K devices is the
    single-device figure divided by K (not K times too high)."""
    from knowundo_bench.train.hook_types import TrainingReport

    report = TrainingReport(step_seconds=[1.0, 1.0, 1.0], step_tokens=[100, 100, 100], flops_per_token=6.0)
    report.step_peak_mem_gb = [0.0] * 3
    one = report.summary(peak_flops=1200.0)
    report.processes = 4
    four = report.summary(peak_flops=1200.0)
    assert one["mfu"] == pytest.approx(0.5) and four["mfu"] == pytest.approx(0.125)
    assert four["tokens_per_sec"] == one["tokens_per_sec"] and four["processes"] == 4


def test_efficiency_view_is_relative_to_ga(tmp_path):
    write_record(tmp_path, "vanilla", {"method": "vanilla", "order": 0, "status": "ok", "metrics": {}})
    write_record(
        tmp_path,
        "ga",
        {"method": "ga", "method_name": "ga", "order": 1, "status": "ok", "training": training(2.0, 4.0, 100.0)},
    )
    write_record(
        tmp_path,
        "memflex",
        {
            "method": "memflex",
            "method_name": "memflex",
            "order": 2,
            "status": "ok",
            "training": training(1.5, 3.0, 150.0),
        },
    )
    result = CliRunner().invoke(app, ["leaderboard", str(tmp_path), "--view", "efficiency", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {row["method"]: row for row in json.loads(result.stdout)}
    assert list(rows) == ["ga", "memflex"]  # the vanilla model has no training steps
    assert rows["ga"]["sec_per_step_vs_ga"] == 1.0
    assert rows["memflex"]["sec_per_step_vs_ga"] == 0.75 and rows["memflex"]["peak_mem_gb_vs_ga"] == 0.75
    assert rows["memflex"]["tokens_per_sec_vs_ga"] == 1.5
    table = CliRunner().invoke(app, ["leaderboard", str(tmp_path), "--view", "efficiency"]).stdout
    assert table.splitlines()[0].startswith(
        "| Method | s/step | p90 s/step | peak RSS growth GB (CPU) | tokens/s | MFU | s/step vs GA"
    )
    assert "| memflex | 1.500 | 1.650 | 3.000 | 150 | – | 0.75× | 0.75× | 1.50× |" in table
    assert "memory: cpu_peak_rss_growth on cpu" in table
    csv_text = CliRunner().invoke(app, ["leaderboard", str(tmp_path), "--view", "efficiency", "-f", "csv"]).stdout
    assert csv_text.splitlines()[0].startswith("method,sec_per_step,sec_per_step_p90,peak_mem_gb")


def test_efficiency_view_adds_localisation_to_the_total(tmp_path):
    """Table 5 compares seconds per step; MemFlex also pays for its localisation once.
    The total is the localizer's seconds plus every step's, and the padding share is the
    training summary's."""
    write_record(tmp_path, "vanilla", {"method": "vanilla", "order": 0, "status": "ok", "metrics": {}})
    ga_gd = {**training(2.0, 1.0, 50.0), "step_seconds": [2.0, 2.5, 1.5], "padding_fraction": 0.25}
    memflex = {**training(1.5, 1.0, 60.0), "step_seconds": [1.5, 1.5], "padding_fraction": 0.0}
    body = {"status": "ok", "method_name": "ga_gd", "method": "ga_gd", "order": 1}
    write_record(tmp_path, "ga_gd", {**body, "training": ga_gd})
    localizer = {"name": "memflex", "selected": ["w"], "seconds": 4.0}
    body = {"status": "ok", "method_name": "memflex", "method": "memflex", "order": 2, "localizer": localizer}
    write_record(tmp_path, "memflex", {**body, "training": memflex})
    rows = {row["method"]: row for row in json.loads(leaderboard(tmp_path, "--view", "efficiency", "-f", "json"))}
    assert rows["ga_gd"]["localize_seconds"] is None and rows["ga_gd"]["total_seconds"] == pytest.approx(6.0)
    assert rows["memflex"]["localize_seconds"] == 4.0 and rows["memflex"]["total_seconds"] == pytest.approx(7.0)
    assert rows["ga_gd"]["padding_fraction"] == 0.25
    table = leaderboard(tmp_path, "--view", "efficiency")
    assert "| padding | localize s | total s |" in table.splitlines()[0]
    lines = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| ")}
    assert lines["| memflex"].endswith("| 0.0% | 4.0 | 7.0 |") and lines["| ga_gd"].endswith("| 25.0% | – | 6.0 |")


FLOOR_NOTE = "RSS growth vs GA (CPU): – where this row's or GA's CPU RSS growth is below the 0.05 GB noise floor"


def test_cpu_memory_ratio_below_the_noise_floor_is_a_dash_with_a_footnote(tmp_path):
    assert CPU_RSS_NOISE_FLOOR_GB == 0.05
    ga_and_memflex(tmp_path, ga_gb=0.02, memflex_gb=0.5)  # GA's growth is noise: no ratio for anyone
    table = leaderboard(tmp_path, "--view", "efficiency")
    assert "| ga | 2.000 | 2.200 | 0.020 | 50 | – | 1.00× | – | 1.00× |" in table
    assert "| memflex | 1.500 | 1.650 | 0.500 | 67 | – | 0.75× | – | 1.33× |" in table
    assert FLOOR_NOTE in table
    rows = {row["method"]: row for row in json.loads(leaderboard(tmp_path, "--view", "efficiency", "-f", "json"))}
    memflex = rows["memflex"]
    assert memflex["peak_mem_gb_vs_ga"] is None and memflex["sec_per_step_vs_ga"] == 0.75
    assert memflex["peak_mem_gb_vs_ga_omitted"] == "below_cpu_rss_noise_floor"
    assert memflex["memory_noise_floor_gb"] == 0.05 and memflex["memory_kind"] == "cpu_peak_rss_growth"
    csv_rows = list(csv.DictReader(io.StringIO(leaderboard(tmp_path, "--view", "efficiency", "-f", "csv"))))
    assert csv_rows[1]["peak_mem_gb_vs_ga"] == "" and csv_rows[1]["peak_mem_gb_vs_ga_omitted"] == (
        "below_cpu_rss_noise_floor"
    )


def test_cpu_memory_ratio_above_the_noise_floor_is_computed(tmp_path):
    ga_and_memflex(tmp_path, ga_gb=0.06, memflex_gb=0.09)  # both just above the floor
    table = leaderboard(tmp_path, "--view", "efficiency")
    assert "| memflex | 1.500 | 1.650 | 0.090 | 67 | – | 0.75× | 1.50× | 1.33× |" in table
    assert "noise floor" not in table
    memflex = json.loads(leaderboard(tmp_path, "--view", "efficiency", "-f", "json"))[1]
    assert memflex["peak_mem_gb_vs_ga"] == pytest.approx(1.5) and memflex["peak_mem_gb_vs_ga_omitted"] is None


def test_cuda_memory_has_no_floor_and_keeps_peak_gb(tmp_path):
    ga_and_memflex(tmp_path, ga_gb=0.02, memflex_gb=0.01, device="NVIDIA H200")  # the allocator's peak is exact
    table = leaderboard(tmp_path, "--view", "efficiency")
    header = table.splitlines()[0]
    assert "| peak GB |" in header and "| peak GB vs GA |" in header and "RSS" not in header
    assert "| memflex | 1.500 | 1.650 | 0.010 | 67 | 25.0% | 0.75× | 0.50× | 1.33× |" in table
    memflex = json.loads(leaderboard(tmp_path, "--view", "efficiency", "-f", "json"))[1]
    assert memflex["memory_noise_floor_gb"] is None and memflex["peak_mem_gb_vs_ga"] == 0.5
    assert leaderboard(tmp_path).splitlines()[0].endswith("| s/step | peak GB |")


def test_cpu_memory_is_labelled_rss_growth_in_every_view(tmp_path):
    ga_and_memflex(tmp_path, ga_gb=0.2, memflex_gb=0.3)
    assert "| peak RSS growth GB (CPU) | tokens/s |" in leaderboard(tmp_path, "--view", "efficiency")
    scope = leaderboard(tmp_path).splitlines()
    assert scope[0].endswith("| s/step | peak RSS growth GB (CPU) |") and "peak GB" not in scope[0]
    assert leaderboard(tmp_path, "--per-seed").splitlines()[0].endswith("| peak RSS growth GB (CPU) |")
    assert json.loads(leaderboard(tmp_path, "-f", "json"))[1]["memory_kind"] == "cpu_peak_rss_growth"


def test_a_record_without_memory_kind_is_labelled_by_its_device(tmp_path):
    ga_and_memflex(tmp_path, ga_gb=0.2, memflex_gb=0.3)
    for name in ("ga", "memflex"):
        record = json.loads((tmp_path / f"{name}.json").read_text())
        del record["training"]["memory_kind"]
        (tmp_path / f"{name}.json").write_text(json.dumps(record))
    assert leaderboard(tmp_path).splitlines()[0].endswith("| peak RSS growth GB (CPU) |")


def test_mixed_cpu_and_cuda_rows_name_their_device_per_cell(tmp_path):
    cpu, cuda = tmp_path / "cpu", tmp_path / "cuda"
    ga_and_memflex(cpu, ga_gb=0.2, memflex_gb=0.3)
    ga_and_memflex(cuda, ga_gb=12.0, memflex_gb=6.0, device="NVIDIA H200")
    table = leaderboard(cpu, cuda, "--view", "efficiency")
    header = table.splitlines()[0]
    assert "| peak GB (CUDA) / RSS growth GB (CPU) |" in header and "| peak GB / RSS growth vs GA |" in header
    lines = table.splitlines()
    assert lines[3] == "| memflex | 1.500 | 1.650 | 0.300 (CPU) | 67 | – | 0.75× | 1.50× (CPU) | 1.33× |"
    assert lines[5] == "| memflex | 1.500 | 1.650 | 6.000 (CUDA) | 67 | 25.0% | 0.75× | 0.50× (CUDA) | 1.33× |"
    scope = leaderboard(cpu, cuda).splitlines()
    assert scope[0].endswith("| s/step | peak GB (CUDA) / RSS growth GB (CPU) |")
    assert scope[2].endswith("| – | – |")  # the vanilla model: no memory, no device
    assert scope[3].endswith("| 2.000 | 0.20 (CPU) |") and scope[6].endswith("| 2.000 | 12.00 (CUDA) |")


def test_no_memory_ratio_between_cpu_rss_growth_and_a_cuda_peak(tmp_path):
    ga_and_memflex(tmp_path, ga_gb=12.0, memflex_gb=6.0, device="NVIDIA H200")
    record = json.loads((tmp_path / "memflex.json").read_text())
    record["training"] = training(1.5, 0.3, 100.0 / 1.5)  # this unit resumed on a CPU machine
    (tmp_path / "memflex.json").write_text(json.dumps(record))
    memflex = json.loads(leaderboard(tmp_path, "--view", "efficiency", "-f", "json"))[1]
    assert memflex["peak_mem_gb_vs_ga"] is None and memflex["peak_mem_gb_vs_ga_omitted"] == "different_memory_kind"
    table = leaderboard(tmp_path, "--view", "efficiency")
    assert "| memflex | 1.500 | 1.650 | 0.300 (CPU) | 67 | – | 0.75× | – | 1.33× |" in table
    assert "peak GB / RSS growth vs GA: – where this row and GA's were measured differently" in table
