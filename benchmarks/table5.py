"""Table 5 of the paper on a GPU: time and memory per training step of every method.

    python benchmarks/table5.py            # LLaMA-2-7B shape, bf16, on the GPU
    python benchmarks/table5.py --tiny     # the same code at a tiny shape on CPU (CI)

Builds a LLaMA-2-7B-shaped model with random weights (no download) in bf16, adds LoRA
r=8 on all linear layers, and runs each built-in method for a few optimizer steps at the
paper's setting: sequences of 256 tokens, batch 1, 16 accumulation steps. Data: synthetic
authors with answers lengthened to fill the sequence. Prints the Table 5 layout
(s/step, peak GB, tokens/s, MFU, each against GA) from the harness's own measurement:
CUDA events and the allocator's peak, the first step kept apart as warm-up. On CPU
(``--tiny``) memory is the growth of peak RSS within a step, labelled so, and no ratio
is printed where it is under the leaderboard's noise floor (``CPU_RSS_NOISE_FLOOR_GB``).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from knowundo_bench.benchmark.encoding import PromptEncoder
from knowundo_bench.config.params import TrainingParams
from knowundo_bench.config.spec import EfficiencySpec
from knowundo_bench.leaderboard.efficiency import BELOW_NOISE_FLOOR, memory_ratio
from knowundo_bench.leaderboard.export import memory_titles
from knowundo_bench.modeling.bundles import LoraSpec, attach_lora
from knowundo_bench.modeling.devices import ModelSnapshot, resolve_device
from knowundo_bench.plugin.manager import Plugins, make_plugin_manager
from knowundo_bench.plugins.data.synthetic_authors import generate_authors
from knowundo_bench.plugins.models.tiny import train_tokenizer
from knowundo_bench.plugins.ood.synthetic_text import SyntheticTextParams
from knowundo_bench.plugins.ood.synthetic_text import load as synthetic_text
from knowundo_bench.train.context import UnlearnContext
from knowundo_bench.train.efficiency import peak_flops
from knowundo_bench.train.hook_types import LocalizerRun, MethodRun
from knowundo_bench.train.loop import StackedWindows
from knowundo_bench.train.packing import PassPlan, padded_positions

SHAPES = {
    "7b": {
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "vocab_size": 32000,
    },
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "vocab_size": 1000,
    },
}
SEQUENCE, GRAD_ACCUM = 256, 16


def build_model(shape: str, device: torch.device, dtype: torch.dtype, vocab: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        **{**SHAPES[shape], "vocab_size": max(vocab, SHAPES[shape]["vocab_size"])}, max_position_embeddings=SEQUENCE * 2
    )
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:  # weights are created (and randomly initialised) where they will live
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return attach_lora(model, LoraSpec(r=8, alpha=16))


def long_pairs(count: int, scope: str, varied: bool = False):
    """QA pairs whose answers repeat until the prompt + answer exceed 256 tokens
    (``varied``: 1 to 12 repeats, so that a window holds examples of unequal length)."""
    pairs = [p for p in generate_authors(max(3, count // 3 + 1)) if p.scope == scope][:count]
    repeats = [1 + (5 * i) % 12 if varied else 12 for i in range(len(pairs))]
    return [p.model_copy(update={"answer": " ".join([p.answer] * r)}) for p, r in zip(pairs, repeats, strict=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shape on CPU, float32")
    parser.add_argument("--steps", type=int, default=3, help="measured optimizer steps per method (after 1 warm-up)")
    parser.add_argument("--methods", nargs="*", help="default: every registered method")
    parser.add_argument(
        "--no-stack", action="store_true", help="one pass per micro-batch (stack_window: false): what stacking gives"
    )
    parser.add_argument(
        "--pad-to-longest",
        action="store_true",
        help="stacked windows padded to their longest example (before issue 28): what padding-free passes give",
    )
    parser.add_argument("--varied-lengths", action="store_true", help="answers of 1 to 12 repeats, not all 256 tokens")
    args = parser.parse_args()
    if args.pad_to_longest:  # one pass per window, as before packing and length buckets
        StackedWindows.plan = lambda self, lengths, chunk: PassPlan(  # type: ignore[method-assign]
            (tuple(range(len(lengths))),), padded_positions(lengths), sum(lengths)
        )
    device = torch.device("cpu") if args.tiny else resolve_device("auto")
    if not args.tiny and device.type != "cuda":
        print("error: the 7B shape needs a GPU (use --tiny on CPU)", file=sys.stderr)
        return 2
    dtype = torch.float32 if args.tiny else torch.bfloat16

    forget = long_pairs(GRAD_ACCUM, "unlearn", args.varied_lengths)
    retain = long_pairs(GRAD_ACCUM, "retention", args.varied_lengths)
    ood = synthetic_text(SyntheticTextParams(n_passages=GRAD_ACCUM))
    tokenizer = train_tokenizer(
        ["Question: Answer:"] + [t for p in forget + retain for t in (p.question, p.answer)], 1000
    )
    encoder = PromptEncoder(tokenizer, SEQUENCE)
    model = build_model("tiny" if args.tiny else "7b", device, dtype, len(tokenizer))
    snapshot = ModelSnapshot(model)
    plugins = Plugins(make_plugin_manager())
    # every method that trains (``none`` has nothing to time)
    names = args.methods or [
        name for name, (info, _) in plugins.methods.entries.items() if issubclass(info.params, TrainingParams)
    ]
    peak = peak_flops(device, EfficiencySpec())
    retain_sets = {"in_distribution": retain, "out_of_distribution": ood}
    rows = []
    for index, name in enumerate(names):
        info, plugin = plugins.methods.resolve(name, "--methods")
        params = info.params(
            epochs=1,
            batch_size=1,
            grad_accum=GRAD_ACCUM,
            lr=5e-5,
            max_steps=args.steps + 1,
            stack_window=not args.no_stack,
        )
        snapshot.restore(model)
        context = UnlearnContext(encoder=encoder, seed=index, warmup_steps=1, mixed_precision="no", label=name)
        forget_epoch = forget * (args.steps + 1)  # enough micro-batches for every step in one epoch
        localize_seconds = None
        if info.default_localizer:
            localizer, localizer_plugin = plugins.localizers.resolve(info.default_localizer, name)
            started = time.perf_counter()
            selection = plugins.call_on(
                localizer_plugin,
                "localize",
                plugins.localizers,
                localizer=LocalizerRun(localizer.name, localizer.params(sigma_percentile=50, n_passes=1), index),
                model=model,
                forget=forget,
                retain=retain_sets[info.retain],
                context=context,
            )
            localize_seconds = time.perf_counter() - started
            context.trainable, context.row_masks = set(selection.selected), dict(selection.row_masks)
        report = plugins.call_on(
            plugin,
            "unlearn",
            plugins.methods,
            method=MethodRun(name, name, params, index),
            model=model,
            forget=forget_epoch,
            retain=retain_sets[info.retain],
            context=context,
        )
        rows.append({"method": name, **report.summary(peak), "localize_seconds": localize_seconds})
        if device.type == "cuda":
            torch.cuda.empty_cache()

    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    total = sum(p.numel() for p in model.parameters())
    print(
        f"# Table 5 layout: {'tiny' if args.tiny else 'LLaMA-2-7B'} shape ({total / 1e6:,.1f}M parameters, LoRA r=8 "
        f"on all linear layers), {dtype}, {card}; sequence {SEQUENCE}, batch 1 x {GRAD_ACCUM} accumulation steps; "
        f"median of {args.steps} steps after 1 warm-up; "
        + ("one pass per micro-batch" if args.no_stack else "windows stacked where the loss allows (stack_window)")
        + ("; stacked windows padded to their longest" if args.pad_to_longest else "; padding-free passes")
        + ("; answers of varied length" if args.varied_lengths else "")
    )
    ga = next((r for r in rows if r["method"] == "ga"), rows[0])
    memory, ratio = memory_titles(rows)  # one device: CUDA peak GB, or CPU RSS growth
    print(f"| Method | s/step | {memory} | tokens/s | MFU | s/step vs GA | {ratio} | passes/step | padding |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    omitted: set[str | None] = set()
    for row in rows:
        mfu = "–" if row["mfu"] is None else f"{100 * row['mfu']:.1f}%"
        value, why = memory_ratio(row, ga)
        omitted.add(why)
        memory_ratio_text = "–" if value is None else f"{value:.2f}"
        print(
            f"| {row['method']} | {row['sec_per_step']:.3f} | {row['peak_mem_gb']:.3f} | {row['tokens_per_sec']:.0f} "
            f"| {mfu} | {row['sec_per_step'] / ga['sec_per_step']:.2f} | {memory_ratio_text} "
            f"| {row.get('forward_passes_per_step') or '–'} | {row.get('padding_fraction') or 0:.2f} |"
        )
    if BELOW_NOISE_FLOOR in omitted:
        print(f"# {ratio}: – where this row's or GA's CPU RSS growth is under the noise floor (allocator noise)")
    print(
        f"# memory: {rows[0]['memory_kind']}; localisation (not in s/step): "
        + ", ".join(f"{r['method']} {r['localize_seconds']:.1f}s" for r in rows if r["localize_seconds"] is not None)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
