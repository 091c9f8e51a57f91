"""Step measurement on CPU (the CUDA path is in test_training, skipped without a GPU)
and the leaderboard's efficiency view (Table 5's layout)."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from typer.testing import CliRunner

from knowundo_bench.cli import app
from knowundo_bench.harness.efficiency import EfficiencySpec, StepMeter, peak_flops
from knowundo_bench.harness.records.files import write_record


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


def test_peak_flops_from_spec_or_none_on_cpu():
    assert peak_flops(torch.device("cpu"), EfficiencySpec()) is None
    assert peak_flops(torch.device("cpu"), EfficiencySpec(peak_tflops=312)) == 312e12


def training(sec: float, gb: float, tps: float) -> dict:
    return {
        "sec_per_step": sec,
        "sec_per_step_p90": sec * 1.1,
        "peak_mem_gb": gb,
        "tokens_per_sec": tps,
        "mfu": None,
        "memory_kind": "cpu_peak_rss_growth",
        "device": "cpu",
    }


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
    assert table.splitlines()[0].startswith("| Method | s/step | p90 s/step | peak GB | tokens/s | MFU | s/step vs GA")
    assert "| memflex | 1.500 | 1.650 | 3.000 | 150 | – | 0.75× | 0.75× | 1.50× |" in table
    assert "memory: cpu_peak_rss_growth on cpu" in table
    csv_text = CliRunner().invoke(app, ["leaderboard", str(tmp_path), "--view", "efficiency", "-f", "csv"]).stdout
    assert csv_text.splitlines()[0].startswith("method,sec_per_step,sec_per_step_p90,peak_mem_gb")
