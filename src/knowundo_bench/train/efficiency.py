"""Time and memory per optimizer step (Table 5), measured without distorting the step.

* CUDA: a pair of ``torch.cuda.Event(enable_timing=True)`` recorded around each step
  and read after one synchronize when training ends (no per-step synchronize), and
  ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` per step (the
  allocator keeps these on the host, so reading them does not wait for the GPU).
* CPU: ``time.perf_counter`` and the growth of peak resident memory over the step's
  starting RSS. On Linux the peak (VmHWM) is reset before each step through
  ``/proc/self/clear_refs``; elsewhere the process-wide peak is used.

The first ``warmup_steps`` steps (allocator and kernel warm-up) are kept apart.
Model FLOP utilisation counts 6·N FLOPs per token when every parameter trains and 4·N
when some are frozen (LoRA, localisation: no weight gradients for frozen weights), N the
model's parameter count, against the card's dense bf16 peak (spec or lookup by name).
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from knowundo_bench.config.spec import EfficiencySpec
from knowundo_bench.records.memory import CPU_MEMORY, CUDA_MEMORY

# Dense bf16 (fp16 where the card has no bf16) tensor-core peaks in TFLOP/s, by a
# substring of torch.cuda.get_device_name(); the first match wins.
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("RTX A6000", 155.0),
    ("RTX 4090", 165.0),
    ("V100", 125.0),
    ("T4", 65.0),
)
_PROC = Path("/proc/self")


def peak_flops(device: torch.device, spec: EfficiencySpec) -> float | None:
    if spec.peak_tflops is not None:
        return spec.peak_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops * 1e12 for key, tflops in PEAK_TFLOPS if key in name), None)


def _proc_kib(field_name: str) -> int | None:
    try:
        for line in (_PROC / "status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        (_PROC / "clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _max_rss_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


class StepMeter:
    """Measures each optimizer step; :meth:`finish` returns seconds and peak GB per step."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self._events: list[tuple[Any, Any]] = []
        self._seconds: list[float] = []
        self.peaks_gb: list[float] = []
        self.memory_kind = CUDA_MEMORY if self.cuda else CPU_MEMORY

    def start(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            start = torch.cuda.Event(enable_timing=True)
            start.record()
            self._events.append((start, None))
            return
        self._resettable = _reset_peak_rss()
        self._rss_start = _proc_kib("VmRSS") or _max_rss_kib()
        self._started = time.perf_counter()

    def stop(self) -> None:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._events[-1] = (self._events[-1][0], end)
            self.peaks_gb.append(torch.cuda.max_memory_allocated(self.device) / 1024**3)
            return
        self._seconds.append(time.perf_counter() - self._started)
        peak = (_proc_kib("VmHWM") if self._resettable else None) or _max_rss_kib()
        self.peaks_gb.append(max(0, peak - self._rss_start) / 1024**2)

    def finish(self) -> list[float]:
        """Seconds per step (one synchronize on CUDA, here at the end)."""
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return [start.elapsed_time(end) / 1000.0 for start, end in self._events]
        return list(self._seconds)


def step_summary(
    seconds: list[float],
    peaks_gb: list[float],
    tokens: list[int],
    warmup_steps: int,
    flops_per_token: float | None,
    peak: float | None,
    processes: int = 1,
) -> dict[str, Any]:
    """Median and p90 seconds, peak GB, tokens/s and MFU over the steps after warm-up
    (over all steps when there are no others). ``tokens`` are every process's; MFU is
    against ``processes`` devices' peak, and tokens/s is the whole run's."""
    measured = slice(warmup_steps, None) if len(seconds) > warmup_steps else slice(None)
    times, step_tokens, step_peaks = seconds[measured], tokens[measured], peaks_gb[measured]
    ordered = sorted(times)
    total = sum(times)
    tokens_per_sec = sum(step_tokens) / total if step_tokens and total > 0 else None
    mfu = None
    if tokens_per_sec and flops_per_token and peak:
        mfu = flops_per_token * tokens_per_sec / (peak * processes)
    return {
        "measured_steps": len(times),
        "sec_per_step": statistics.median(ordered) if ordered else None,
        "sec_per_step_p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))] if ordered else None,
        "warmup_sec_per_step": seconds[:warmup_steps] if len(seconds) > warmup_steps else [],
        "peak_mem_gb": max(step_peaks) if step_peaks else None,
        "tokens_per_sec": tokens_per_sec,
        "mfu": mfu,
        "processes": processes,
    }
