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

:func:`memflex_step_bound` is the step-time ratio that training only some tensors should
reach against training them all, from the weight matmuls' FLOPs it still has to do
(:func:`localised_matmuls` reads them off a model).
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Collection, Mapping
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


def memflex_step_bound(
    weights: Mapping[str, int], selected: Collection[str], input_grad: Collection[str] | None = None
) -> float:
    """MemFlex's step as a fraction of GA+GD's, counting the weight matmuls' FLOPs only.

    ``weights``: every weight matmul of the model (each ``nn.Linear``, the ``lm_head``
    included) by its parameter's name, with the parameter's size ``n``; ``selected``: the
    tensors MemFlex trains (names that are not matmul weights, such as norms or the input
    embedding, add no matmul work); ``input_grad``: the matmuls whose input gradient the
    localised step still computes, ``None`` for all of them.

    A matmul with an ``n``-parameter weight costs ``2n`` FLOPs per token forward, ``2n``
    backward for its input gradient and ``2n`` for its weight gradient; in a dense LM every
    weight, the ``lm_head`` too, sees every token, so parameter counts weigh FLOPs. Let
    ``F`` be the sum of ``n`` over the matmuls (the forward's work). A GA+GD step trains
    everything, the input embedding included, so every matmul's input needs a gradient:
    ``F + F + F = 3F``. MemFlex's step still runs the whole forward (``F``), computes the
    weight gradient of the selected matmuls only (``W = sum of n selected``), and the input
    gradient of a matmul only where a trainable tensor lies below its input, so that
    autograd must carry the gradient further down (``I = sum of n over input_grad``;
    below the lowest trainable tensor autograd does no work at all)::

        bound = (F + I + W) / 3F        # = (2 + s) / 3 when I = F, s = W / F

    The input embedding is a lookup: no matmul forward, and its weight gradient a scatter,
    so it counts for nothing here, selected or not (it only moves where back-propagation
    has to reach). Left out is the work that is not weight matmuls: attention's score and
    mixing products and per-element work (norms, activations, the loss, AdamW). Where
    back-propagation reaches the first layer (a selected tensor at or below layer 0's
    first matmul, as in ``benchmarks/efficiency.py``), MemFlex does all of the attention and norm backward too,
    so leaving it out only lowers the bound; but it saves AdamW's work and the embedding
    gradient for every frozen tensor, and where back-propagation stops higher up it saves
    the backward of the layers below as well: a measured step can then be a little under
    this figure. It is a FLOP model, not a guarantee: on a small model per-operation
    overhead can move a step either way.
    """
    forward = sum(weights.values())
    if forward <= 0:
        raise ValueError("no weight matmuls to count")
    unknown = set(input_grad or ()) - set(weights)
    if unknown:
        raise ValueError(f"input_grad names tensors that are not weight matmuls: {sorted(unknown)[:3]}")
    weight_grads = sum(n for name, n in weights.items() if name in selected)
    input_grads = forward if input_grad is None else sum(weights[name] for name in set(input_grad))
    return (forward + input_grads + weight_grads) / (3 * forward)


def localised_matmuls(
    model: torch.nn.Module, inputs: Mapping[str, torch.Tensor], trainable: Collection[str]
) -> tuple[dict[str, int], set[str]]:
    """:func:`memflex_step_bound`'s ``weights`` and ``input_grad`` for ``model`` trained
    on ``trainable`` only: every ``nn.Linear``'s weight name and size, and the names of
    those whose input requires a gradient, as autograd sees it in one forward pass of
    ``inputs`` with every other parameter frozen (the flags are restored afterwards)."""
    names = {id(p): n for n, p in model.named_parameters()}
    linears = [
        (names[id(m.weight)], m) for m in model.modules() if isinstance(m, torch.nn.Linear) and id(m.weight) in names
    ]
    weights = {name: module.weight.numel() for name, module in linears}
    needs: set[str] = set()

    def record(name: str):
        def hook(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
            if args and isinstance(args[0], torch.Tensor) and args[0].requires_grad:
                needs.add(name)

        return hook

    hooks = [module.register_forward_pre_hook(record(name)) for name, module in linears]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for name, p in model.named_parameters():
            p.requires_grad_(p.requires_grad and name in trainable)
        with torch.enable_grad():
            model(**inputs)
    finally:
        for hook in hooks:
            hook.remove()
        for p, flag in flags:
            p.requires_grad_(flag)
    return weights, needs
