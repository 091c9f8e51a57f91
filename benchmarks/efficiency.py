"""Efficiency figures, each a ratio of two timings measured side by side in one run.

    python benchmarks/efficiency.py            # or: make bench

prints one ``name=value`` line per figure:

1. memflex_vs_ga_gd_step_ratio  MemFlex's optimizer step / GA+GD's, same model, batches
                                and objective; MemFlex trains only its selected tensors
   memflex_step_bound           the least that ratio can be, from the matmul FLOPs MemFlex
                                still does (``train.efficiency.memflex_step_bound``: the
                                whole forward, the input gradients above its lowest
                                selected tensor, the weight gradients of its selection)
2. harness_vs_bare_loop_ratio   the harness's training loop / a bare PyTorch loop with
                                the same loss, optimizer, schedule and clipping
3. batched_eval_speedup         per-example evaluation (batch size 1, as the official
                                code) / the harness's batched evaluation, privacy val splits
4. localize_vs_epoch_ratio      MemFlex localisation (faithful: N corrupted copies) / one
                                epoch of GA+GD
5. localize_fast_vs_epoch_ratio the fast localizer (random targets, one forward and one
                                backward per batch) / one epoch of GA+GD
6. localize_fast_agreement      mean Jaccard similarity of the tensors the two localizers
                                select, over several seeds (min and each seed on a # line)
7. ga_gd_vs_hf_trainer_step_ratio  the harness's GA+GD step / open-unlearning's GradDiff on
                                HF ``Trainer`` (``hf_trainer_peer.py``), the official recipe:
                                batch 1 x 16 accumulation steps, same model, batches, order,
                                optimiser and schedule; the harness runs each window as a
                                few padding-free passes (``stack_window``)
   ga_gd_vs_hf_trainer_step_ratio_unstacked  the same with ``stack_window: false`` (one
                                pass per micro-batch), for reference
8. memflex_total_vs_ga_gd_total  one unit's wall time, MemFlex (faithful localisation +
                                localised training) / GA+GD (training), same data and steps
   padding_fraction_*           the share of computed positions that are padding: training
                                windows of the official recipe and evaluation batches, before
                                (padded to the longest of the window or batch) and after

GA+GD batches are the official mixed forget+retain dataset (``retain_batching: mixed``).

Timings alternate between the two sides over several rounds and the medians are compared,
so drift on a shared machine affects both sides alike. Run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PRIVACY = ROOT.parent / "shared" / "data" / "knowundo" / "privacy"

from knowundo_bench.benchmark.encoding import PromptEncoder  # noqa: E402
from knowundo_bench.benchmark.files import infer_instances, read_local_domain
from knowundo_bench.benchmark.pairs import Benchmark, first_instances
from knowundo_bench.config.evaluation import EvalSpec  # noqa: E402
from knowundo_bench.config.params import TrainingParams
from knowundo_bench.evaluate.scopes import evaluate
from knowundo_bench.modeling.devices import ModelSnapshot  # noqa: E402
from knowundo_bench.plugins.localizers import memflex as memflex_localizer  # noqa: E402
from knowundo_bench.plugins.localizers import memflex_fast  # noqa: E402
from knowundo_bench.plugins.localizers.memflex import MemFlexLocalizerParams  # noqa: E402
from knowundo_bench.plugins.methods.ga_gd import weighted_objective  # noqa: E402
from knowundo_bench.plugins.models.tiny import train_tokenizer  # noqa: E402
from knowundo_bench.train.context import UnlearnContext
from knowundo_bench.train.efficiency import localised_matmuls, memflex_step_bound
from knowundo_bench.train.hook_types import LocalizerRun
from knowundo_bench.train.loop import _lr_lambda, make_mixed_batches, mixed_dataset, train, warmup_steps_for
from knowundo_bench.train.packing import padded_positions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hf_trainer_peer import train_with_hf_trainer  # noqa: E402


def tiny_model(vocab: int, hidden: int, layers: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=512,
        )
    )


def setup(instances: int, hidden: int, layers: int):
    pairs = infer_instances(read_local_domain(PRIVACY))
    benchmark = Benchmark(tuple(first_instances(pairs, instances)))
    tokenizer = train_tokenizer(["Question: Answer:"] + [t for p in pairs for t in (p.question, p.answer)], 2048)
    encoder = PromptEncoder(tokenizer, 256)
    return benchmark, encoder, tiny_model(len(tokenizer), hidden, layers), pairs


def step_seconds(model, batches, objective, params, trainable=None) -> list[float]:
    return train_report(model, batches, objective, params, trainable).step_seconds[1:]


def train_report(model, batches, objective, params, trainable=None):
    return train(
        model,
        objective=objective,
        params=params,
        epoch_batches=lambda epoch: batches,
        seed=0,
        trainable=trainable,
        warmup_steps=1,
    )


def bare_loop_seconds(model, batches, objective, params) -> list[float]:
    """The same optimisation in plain PyTorch: AdamW, warm-up + cosine schedule, clipping."""
    named = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(named, lr=params.lr, weight_decay=params.weight_decay)
    total = len(batches)
    warmup = warmup_steps_for(total, params.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total, warmup))
    model.train()
    seconds = []
    for batch in batches:
        started = time.perf_counter()
        loss = objective(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(named, params.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seconds.append(time.perf_counter() - started)
    return seconds[1:]


def alternate(rounds: int, first, second) -> tuple[float, float]:
    """Median of each side's per-step seconds over ``rounds`` alternating runs."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        a += first()
        b += second()
    return statistics.median(a), statistics.median(b)


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def timed_localization(plugin, model, benchmark, context, seed: int, n_passes: int = 5) -> tuple[float, set[str]]:
    params = MemFlexLocalizerParams(mu=0.96, sigma_percentile=50, n_passes=n_passes)
    localizer = LocalizerRun(plugin.__name__.rsplit(".", 1)[1], params, seed)
    started = time.perf_counter()
    selection = plugin.localize(
        localizer=localizer, model=model, forget=benchmark.forget, retain=benchmark.retain, context=context
    )
    return time.perf_counter() - started, set(selection.selected)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instances", type=int, default=20, help="authors for training batches")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--agreement-seeds", type=int, default=3, help="seeds for localize_fast_agreement")
    args = parser.parse_args()
    if not PRIVACY.is_dir():
        print(f"error: KnowUnDo privacy data missing at {PRIVACY}", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, torch.get_num_threads()))
    benchmark, encoder, model, all_pairs = setup(args.instances, args.hidden, args.layers)
    snapshot = ModelSnapshot(model)
    forget, retain = encoder.encode_all(benchmark.forget), encoder.encode_all(benchmark.retain)
    batch_size = 8
    batches = make_mixed_batches(encoder, mixed_dataset(forget, retain, 1, random.Random(0)), batch_size)
    params = TrainingParams(epochs=1, lr=1e-4, batch_size=batch_size, grad_accum=1)
    objective = weighted_objective(-1.0, 1.0)
    context = UnlearnContext(encoder=encoder, seed=0)

    localize_seconds, trainable = timed_localization(memflex_localizer, model, benchmark, context, 0)
    fast_seconds, fast_selection = timed_localization(memflex_fast, model, benchmark, context, 0)
    agreements = [jaccard(trainable, fast_selection)]
    for seed in range(1, args.agreement_seeds):
        agreements.append(
            jaccard(
                timed_localization(memflex_localizer, model, benchmark, context, seed)[1],
                timed_localization(memflex_fast, model, benchmark, context, seed)[1],
            )
        )

    def run_ga_gd():
        snapshot.restore(model)
        return step_seconds(model, batches, objective, params)

    def run_memflex():
        snapshot.restore(model)
        return step_seconds(model, batches, objective, params, trainable)

    def run_bare():
        snapshot.restore(model)
        return bare_loop_seconds(model, batches, objective, params)

    upper_half = {
        n
        for n, _ in model.named_parameters()
        if any(f".layers.{i}." in n for i in range(args.layers // 2, args.layers)) or "lm_head" in n
    }

    def run_upper_half():
        snapshot.restore(model)
        return step_seconds(model, batches, objective, params, upper_half)

    # The official recipe (batch 1 x 16 accumulation steps) against the HF Trainer peer.
    recipe_batches = make_mixed_batches(encoder, mixed_dataset(forget, retain, 1, random.Random(0)), 1)
    recipe = TrainingParams(epochs=1, lr=1e-4, batch_size=1, grad_accum=16)
    recipe_losses: dict[str, list[float]] = {}

    recipe_padding: dict[str, float] = {}

    def run_recipe(stack_window: bool):
        def run():
            snapshot.restore(model)
            report = train_report(
                model, recipe_batches, objective, recipe.model_copy(update={"stack_window": stack_window})
            )
            arm = "stacked" if stack_window else "one_by_one"
            recipe_losses[arm] = report.step_losses
            recipe_padding[arm] = report.summary()["padding_fraction"]
            return report.step_seconds[1:]

        return run

    def run_hf_trainer():
        snapshot.restore(model)
        seconds, recipe_losses["hf_trainer"] = train_with_hf_trainer(model, recipe_batches, recipe, -1.0, 1.0)
        return seconds[1:]

    stacked_step, trainer_step = alternate(args.rounds, run_recipe(True), run_hf_trainer)
    one_by_one_step, trainer_step_again = alternate(max(1, args.rounds // 2), run_recipe(False), run_hf_trainer)
    loss_gaps = {
        arm: max(abs(a - b) for a, b in zip(recipe_losses[arm], recipe_losses["hf_trainer"], strict=True))
        for arm in ("stacked", "one_by_one")
    }

    memflex, ga_gd = alternate(args.rounds, run_memflex, run_ga_gd)
    upper, ga_gd_again = alternate(max(1, args.rounds // 2), run_upper_half, run_ga_gd)
    harness, bare = alternate(args.rounds, run_ga_gd, run_bare)

    snapshot.restore(model)
    started = time.perf_counter()
    step_seconds(model, batches, objective, params)
    epoch_seconds = time.perf_counter() - started
    # the localizers again, warm as the epoch is (the first calls above also paid for encoding)
    cold_localize_seconds, cold_fast_seconds = localize_seconds, fast_seconds
    localize_seconds = timed_localization(memflex_localizer, model, benchmark, context, 0)[0]
    fast_seconds = timed_localization(memflex_fast, model, benchmark, context, 0)[0]
    # what-if: the official code's N = 3 copies instead of the paper's 5 (MemFlex keeps 5)
    official_n_seconds = timed_localization(memflex_localizer, model, benchmark, context, 0, n_passes=3)[0]

    # One unit's wall time, two epochs (Table 7's), MemFlex against GA+GD.
    unit = params.model_copy(update={"epochs": 2})
    snapshot.restore(model)
    started = time.perf_counter()
    train_report(model, batches, objective, unit)
    ga_gd_total = time.perf_counter() - started
    snapshot.restore(model)
    started = time.perf_counter()
    localization = timed_localization(memflex_localizer, model, benchmark, context, 0)[1]
    train_report(model, batches, objective, unit, localization)
    memflex_total = time.perf_counter() - started
    snapshot.restore(model)

    # Padding before: a recipe window stacked to its longest example, evaluation batches in split order.
    window_lengths = [
        [int(part["attention_mask"].sum()) for b in recipe_batches[start : start + 16] for part in b.values()]
        for start in range(0, len(recipe_batches), 16)
    ]
    stacked_before = statistics.mean(1 - sum(w) / padded_positions(w) for w in window_lengths)
    eval_examples = encoder.encode_all(list(all_pairs), with_eos=False)
    eval_padding = {}
    for arm, order in (("before", eval_examples), ("after", sorted(eval_examples, key=lambda e: len(e.input_ids)))):
        lengths = [len(e.input_ids) for e in order]
        chunks = [lengths[start : start + 64] for start in range(0, len(lengths), 64)]
        eval_padding[arm] = 1 - sum(lengths) / sum(padded_positions(c) for c in chunks)

    # Evaluation on the whole privacy val splits (all authors), ROUGE-L included.
    full = Benchmark(tuple(all_pairs))
    eval_spec = EvalSpec(batch_size=64, rouge=True, max_new_tokens=32, prompt_prefixes={})
    snapshot.restore(model)
    started = time.perf_counter()
    batched = evaluate(model, encoder, full, eval_spec)
    batched_seconds = time.perf_counter() - started
    started = time.perf_counter()
    single = evaluate(model, encoder, full, eval_spec.model_copy(update={"batch_size": 1}))
    single_seconds = time.perf_counter() - started
    assert math.isclose(single["retention"]["success"], batched["retention"]["success"], abs_tol=1e-6)

    selected = sum(p.numel() for n, p in model.named_parameters() if n in trainable)
    part = next(iter(batches[0].values()))  # one forward shows where back-propagation stops
    inputs = {name: part[name] for name in ("input_ids", "attention_mask")}
    weights, input_grad = localised_matmuls(model, inputs, trainable)
    bound = memflex_step_bound(weights, trainable, input_grad)
    upper_weights, upper_input_grad = localised_matmuls(model, inputs, upper_half)
    upper_bound = memflex_step_bound(upper_weights, upper_half, upper_input_grad)
    selected_flops = sum(n for name, n in weights.items() if name in trainable) / sum(weights.values())
    total = sum(p.numel() for p in model.parameters())
    print(
        f"# {args.layers}-layer Llama, hidden {args.hidden}, {total / 1e6:.1f}M parameters; MemFlex selected "
        f"{len(trainable)} tensors ({100 * selected / total:.0f}% of parameters, {100 * selected_flops:.0f}% of "
        f"the weight matmuls' FLOPs; input gradients in {len(input_grad)} of {len(weights)} matmuls); "
        f"{len(batches)} batches of {batch_size}; {torch.get_num_threads()} threads; medians of {args.rounds} "
        "alternating rounds"
    )
    print(
        f"# ga_gd {ga_gd:.4f}s memflex {memflex:.4f}s harness {harness:.4f}s bare {bare:.4f}s; "
        f"eval batch 1 {single_seconds:.1f}s batch 64 {batched_seconds:.1f}s; localize {localize_seconds:.2f}s, "
        f"localize fast {fast_seconds:.2f}s, epoch {epoch_seconds:.2f}s (first calls: localize "
        f"{cold_localize_seconds:.2f}s, fast {cold_fast_seconds:.2f}s)"
    )
    print(
        f"# localizer agreement (Jaccard of selected tensors) per seed: "
        f"{', '.join(f'{a:.3f}' for a in agreements)}; min {min(agreements):.3f}"
    )
    lowest = min(int(n.split(".layers.")[1].split(".")[0]) for n in trainable if ".layers." in n)
    print(
        f"# MemFlex's lowest selected layer: {lowest} (back-propagation must reach it); what-if, training only "
        f"the upper half of the layers + lm_head: step ratio {upper / ga_gd_again:.3f} (bound {upper_bound:.3f})"
    )
    print(
        f"# official recipe, {len(recipe_batches)} micro-batches of 1, 16 to a step: harness stacked "
        f"{stacked_step:.4f}s, harness one pass per micro-batch {one_by_one_step:.4f}s, HF Trainer GradDiff "
        f"{trainer_step:.4f}s / {trainer_step_again:.4f}s; one by one vs Trainer "
        f"{one_by_one_step / trainer_step_again:.3f}; "
        f"max |step loss - Trainer's|: stacked {loss_gaps['stacked']:.1e}, one by one {loss_gaps['one_by_one']:.1e}"
    )
    print(f"memflex_vs_ga_gd_step_ratio={memflex / ga_gd:.3f}")
    print(f"memflex_step_bound={bound:.3f}")
    print(f"harness_vs_bare_loop_ratio={harness / bare:.3f}")
    print(f"batched_eval_speedup={single_seconds / batched_seconds:.2f}")
    print(
        f"# what-if, the official code's N = 3 corrupted copies (the paper's 5 stays MemFlex's default): "
        f"localize {official_n_seconds:.2f}s, {official_n_seconds / epoch_seconds:.2f} epochs"
    )
    print(f"localize_vs_epoch_ratio={localize_seconds / epoch_seconds:.2f}")
    print(f"localize_fast_vs_epoch_ratio={fast_seconds / epoch_seconds:.2f}")
    print(f"localize_fast_agreement={statistics.mean(agreements):.3f}")
    print(
        f"# one unit, 2 epochs: GA+GD {ga_gd_total:.2f}s, MemFlex {memflex_total:.2f}s (localisation included); "
        f"epoch {epoch_seconds:.2f}s"
    )
    print(f"ga_gd_vs_hf_trainer_step_ratio={stacked_step / trainer_step:.3f}")
    print(f"ga_gd_vs_hf_trainer_step_ratio_unstacked={one_by_one_step / trainer_step_again:.3f}")
    print(f"memflex_total_vs_ga_gd_total={memflex_total / ga_gd_total:.3f}")
    print(f"padding_fraction_training_before={stacked_before:.3f}")
    print(f"padding_fraction_training_after={recipe_padding['stacked']:.3f}")
    print(f"padding_fraction_training_unstacked={recipe_padding['one_by_one']:.3f}")
    print(f"padding_fraction_eval_before={eval_padding['before']:.3f}")
    print(f"padding_fraction_eval_after={eval_padding['after']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
