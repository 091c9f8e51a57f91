"""How much the second fidelity pass's official details move the numbers (docs/fidelity.md
rows 8, 16a and 15), measured side by side in one run, on CPU, in about a minute:

1. GA+KL over padded positions: on the real privacy domain's retain rows (the tiny
   tokenizer and model of paper-privacy-tiny, a perturbed copy as the unlearning model),
   the share of padding positions at max_length 256, the mean KL at padding vs real
   positions, and the cosine between the gradient of ``kl_positions: padded`` (official)
   and ``all`` (the earlier default).
2. Adapter precision: AdamW over the official GA+GD schedule (200 steps, lr 5e-5, 3%
   warm-up then cosine, clip-free) on LoRA-shaped tensors, with the weights and states in
   float32 (peft >= 0.12) or bf16 (the official peft 0.10 with a bf16 base): the relative
   error of the bf16 total update and the share of entries it never moves.
3. ROUGE-L's budget: the longest privacy val answer in tokens against the old 64.

    .venv/bin/python benchmarks/fidelity_effects.py
"""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from knowundo_bench.benchmark.encoding import PromptEncoder  # noqa: E402
from knowundo_bench.benchmark.files import read_local_domain  # noqa: E402
from knowundo_bench.benchmark.pairs import Benchmark  # noqa: E402
from knowundo_bench.plugins.methods import ga_kl  # noqa: E402
from knowundo_bench.plugins.models.tiny import train_tokenizer  # noqa: E402
from knowundo_bench.train.loop import _lr_lambda, warmup_steps_for  # noqa: E402

PRIVACY = ROOT.parent / "shared" / "data" / "knowundo" / "privacy"


def ga_kl_padding(benchmark: Benchmark) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    corpus = ["Question: Answer:"] + [t for p in benchmark.pairs for t in (p.question, p.answer)]
    tokenizer = train_tokenizer(corpus, 2048)
    encoder = PromptEncoder(tokenizer, 256, prompt_format="raw")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    reference = LlamaForCausalLM(config).eval()
    model = copy.deepcopy(reference)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))  # a model some unlearning steps away
    rows = benchmark.select("retention", "train")[:8]
    batch = encoder.collate(encoder.encode_all(rows, with_eos=False))
    padded = ga_kl.pad_to_length(batch, 256, tokenizer.pad_token_id)
    real = padded["attention_mask"].bool()
    with torch.no_grad():
        log_p = torch.log_softmax(
            model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits, -1
        )
        log_r = torch.log_softmax(
            reference(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits, -1
        )
        per_position = (log_r.exp() * (log_r - log_p)).sum(-1)
    print(f"ga_kl_padding_share={1 - real.float().mean().item():.3f}")
    print(f"ga_kl_mean_kl_real={per_position[real].mean().item():.4g} padding={per_position[~real].mean().item():.4g}")
    gradients = {}
    for kind in ("padded", "all"):
        model.zero_grad()
        positions = ga_kl.KLPositions(kind, 256, tokenizer.pad_token_id)
        ga_kl.retain_kl(model, reference, batch, positions).backward()
        gradients[kind] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    cosine = torch.nn.functional.cosine_similarity(gradients["padded"], gradients["all"], dim=0).item()
    print(f"ga_kl_gradient_cosine_padded_vs_all={cosine:.3f}")


def adapter_precision(steps: int = 200, lr: float = 5e-5) -> None:
    generator = torch.Generator().manual_seed(0)
    start = 0.02 * torch.randn(8, 4096, generator=generator)  # a trained lora_A-sized tensor
    direction = torch.randn(8, 4096, generator=generator)
    gradients = [1e-3 * (direction + torch.randn(8, 4096, generator=generator)) for _ in range(steps)]
    schedule = _lr_lambda(steps, warmup_steps_for(steps, 0.03))
    updates = {}
    for dtype in (torch.float32, torch.bfloat16):
        weight = torch.nn.Parameter(start.to(dtype).clone())
        optimizer = torch.optim.AdamW([weight], lr=lr, weight_decay=0.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        for gradient in gradients:
            weight.grad = gradient.to(dtype)
            optimizer.step()
            scheduler.step()
        updates[dtype] = weight.detach().float() - start.to(dtype).float()
        states = {key: value.dtype for key, value in optimizer.state[weight].items() if key != "step"}
        print(f"adapter_{str(dtype).removeprefix('torch.')}_optimizer_states={sorted(set(map(str, states.values())))}")
    reference, low = updates[torch.float32], updates[torch.bfloat16]
    error = ((low - reference).norm() / reference.norm()).item()
    print(f"adapter_bf16_update_relative_error={error:.3f}")
    print(f"adapter_bf16_entries_never_moved={(low == 0).float().mean().item():.3f}")


def rouge_budget(benchmark: Benchmark) -> None:
    corpus = ["Question: Answer:"] + [t for p in benchmark.pairs for t in (p.question, p.answer)]
    encoder = PromptEncoder(train_tokenizer(corpus, 2048), 256, prompt_format="raw")
    lengths = sorted(len(encoder.answer_ids(p.answer)) for p in benchmark.unlearn_val + benchmark.retention_val)
    over = sum(length > 64 for length in lengths)
    print(f"rouge_longest_privacy_answer_tokens={lengths[-1]} (tiny tokenizer); answers over 64: {over}")
    print(f"rouge_budget={lengths[-1] + max(8, math.ceil(lengths[-1] / 10))}")


def main() -> None:
    torch.set_num_threads(1)
    benchmark = Benchmark(tuple(read_local_domain(PRIVACY)))
    ga_kl_padding(benchmark)
    adapter_precision()
    rouge_budget(benchmark)


if __name__ == "__main__":
    main()
