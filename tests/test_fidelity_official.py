"""Second fidelity pass (issue 26): the official defaults the first pass left out, each
checked against a transcription of the authors' code (github zjunlp/KnowUnDo at 92aea2b)
or against the values its scripts pass. docs/fidelity.md names the files and lines."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from typer.testing import CliRunner

from helpers import TINY_SPEC, authors_model, authors_tokenizer, one_epoch, two_authors
from knowundo_bench.benchmark.encoding import PromptEncoder
from knowundo_bench.cli import app
from knowundo_bench.config.spec import Spec
from knowundo_bench.plugins.methods import ga_kl

PAIRS, FORGET, RETAIN = two_authors()
MAX_LENGTH = 64  # the official pads to 256; any length above the rows' own shows the effect


@pytest.fixture(scope="module")
def tokenizer():
    return authors_tokenizer(PAIRS)


@pytest.fixture
def raw(tokenizer) -> PromptEncoder:
    return PromptEncoder(tokenizer, MAX_LENGTH, prompt_format="raw")


def official_compute_kl(pretrained_model, current_model, texts: list[str], tokenizer) -> torch.Tensor:
    """``compute_kl`` (``methods/ascent_plus_KLdivergence.py:55-89``) on rows tokenised as
    ``llm_tokenize_with_chunk.chunk_and_pad`` does (``:20-40``): each row's first
    ``max_length`` tokens, right-padded with the pad id and attention 0, then
    -(P_ref log(P_theta + 1e-12)) summed over the vocabulary and averaged over every
    position of the padded rows."""
    input_ids, attention_mask = [], []
    for text in texts:
        ids = tokenizer(text)["input_ids"][:MAX_LENGTH]
        padding = MAX_LENGTH - len(ids)
        input_ids.append(ids + [tokenizer.pad_token_id] * padding)
        attention_mask.append([1] * len(ids) + [0] * padding)
    ids, mask = torch.tensor(input_ids), torch.tensor(attention_mask)
    normal_outputs = current_model(ids, attention_mask=mask)
    with torch.no_grad():
        pretrained_outputs = pretrained_model(ids, attention_mask=mask)
    prob_p = torch.nn.functional.softmax(pretrained_outputs.logits, -1)
    prob_q = torch.nn.functional.softmax(normal_outputs.logits, -1)
    return -(prob_p * torch.log(prob_q + 1e-12)).sum(-1).mean()


def test_ga_kl_default_averages_over_the_padded_rows_as_the_official_compute_kl(tokenizer, raw):
    """Default ``kl_positions: padded``: the retain rows padded to ``max_length`` and every
    position averaged, padding included, as officially. The gradient equals the
    official one; the non-padding mean (the earlier harness default) points elsewhere.
    Fails if the default reverts to ``all`` or if padded positions are dropped."""
    assert ga_kl.GAKLParams().kl_positions == "padded"
    model = authors_model(tokenizer)
    reference = ga_kl.frozen_copy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p, generator=torch.Generator().manual_seed(1)))
    rows = RETAIN[:3]
    texts = [f"{pair.question}\n\n{pair.answer}" for pair in rows]
    batch = raw.collate(raw.encode_all(rows, with_eos=False))
    assert batch["input_ids"].shape[1] < MAX_LENGTH  # the collated rows are shorter: padding matters
    positions = ga_kl.KLPositions(ga_kl.GAKLParams().kl_positions, MAX_LENGTH, tokenizer.pad_token_id)
    ours = ga_kl.retain_kl(model, reference, batch, positions)
    official = official_compute_kl(reference, model, texts, tokenizer)
    weights = model.model.layers[0].self_attn.q_proj.weight
    grad_ours = torch.autograd.grad(ours, weights, retain_graph=True)[0]
    grad_official = torch.autograd.grad(official, weights)[0]
    assert torch.allclose(grad_ours, grad_official, rtol=1e-4, atol=1e-6 * grad_official.abs().max().item())
    real_only = ga_kl.retain_kl(model, reference, batch, "all")
    grad_real = torch.autograd.grad(real_only, weights)[0]
    cosine = torch.nn.functional.cosine_similarity(grad_real.flatten(), grad_official.flatten(), dim=0)
    assert cosine < 0.99, cosine  # the padded positions' terms are not zero


def test_ga_kl_padded_rows_keep_only_their_first_max_length_tokens(tokenizer):
    """A row longer than ``max_length`` is not padded further (the official keeps its
    first ``max_length`` tokens; the encoder has already cut it)."""
    batch = {
        "input_ids": torch.ones(2, 10, dtype=torch.long),
        "attention_mask": torch.ones(2, 10, dtype=torch.long),
        "labels": torch.ones(2, 10, dtype=torch.long),
    }
    assert ga_kl.pad_to_length(batch, 8, 0)["input_ids"].shape == (2, 10)
    padded = ga_kl.pad_to_length(batch, 12, 5)
    assert padded["input_ids"][:, 10:].eq(5).all() and padded["attention_mask"][:, 10:].eq(0).all()
    assert padded["labels"][:, 10:].eq(-100).all()


def cli_run(spec: dict, folder: Path) -> str:
    path = folder.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(app, ["run", str(path), "--output", str(folder), "--no-progress"])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_method_starts_from_its_own_vanilla_settings_shared_by_key(tmp_path, offline_environment):
    """``methods[i].vanilla`` (the official MemFlex starts from the 20-epoch 3e-4 adapter,
    the baselines from the 10-epoch 1e-4 one): the method starts from a vanilla model
    trained with the spec's settings changed by its own, recorded as its own row
    ``vanilla-<label>``; methods with the same settings share it (one cache entry per
    key), and a method whose settings equal the spec's starts from ``vanilla``."""
    spec = {
        **TINY_SPEC,
        "methods": [
            one_epoch("ga"),
            one_epoch("ga_gd", vanilla={"epochs": 4, "lr": 2e-3}),
            one_epoch("ga_kl", vanilla={"lr": 2e-3, "epochs": 4}),
            one_epoch("npo", vanilla={"epochs": 3}),  # the spec's own settings
        ],
    }
    log = cli_run(spec, tmp_path / "out")
    records = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "out").glob("*.json")}
    assert set(records) == {"vanilla", "vanilla-ga_gd", "ga", "ga_gd", "ga_kl", "npo"}
    key = {label: record["vanilla"]["key"] for label, record in records.items()}
    assert key["ga"] == key["npo"] == key["vanilla"] != key["ga_gd"] == key["ga_kl"] == key["vanilla-ga_gd"]
    assert records["ga_gd"]["vanilla"]["unit"] == "vanilla-ga_gd" and records["ga"]["vanilla"]["unit"] == "vanilla"
    assert records["vanilla-ga_gd"]["method"] == "vanilla-ga_gd"
    assert records["vanilla-ga_gd"]["vanilla"]["training"]["epochs_run"] == 4
    assert records["vanilla"]["vanilla"]["training"]["epochs_run"] == 3
    cached = list((offline_environment / "knowundo_bench" / "vanilla").iterdir())
    assert sorted(p.name for p in cached) == sorted({key["vanilla"], key["ga_gd"]})
    board = CliRunner().invoke(app, ["leaderboard", str(tmp_path / "out"), "--format", "json"])
    rows = [row["method"] for row in json.loads(board.stdout)]
    assert rows[:2] == ["vanilla", "vanilla-ga_gd"] and rows[2:] == ["ga", "ga_gd", "ga_kl", "npo"]
    assert log.count("trained and cached") == 2
    again = cli_run(spec, tmp_path / "out")
    assert "reused finished results" in again and "trained and cached" not in again


def test_a_method_vanilla_setting_that_is_not_one_is_one_line():
    with pytest.raises(ValueError, match=r"methods\.0\.vanilla\.lr: Input should be greater than 0"):
        Spec.model_validate({**TINY_SPEC, "methods": [one_epoch("ga", vanilla={"lr": -1})]})
    with pytest.raises(ValueError, match=r"methods\.0\.vanilla\.per_seed"):
        Spec.model_validate({**TINY_SPEC, "methods": [one_epoch("ga", vanilla={"per_seed": True})]})


def test_the_rouge_budget_defaults_to_the_longest_reference_answer_plus_a_tenth(privacy_dir):
    """``eval.max_new_tokens`` unset: greedy generation may run to the domain's longest
    val answer (in the model's tokens) plus a tenth, at least 8; a set value wins. On the
    real privacy domain the old fixed 64 cut answers short with this tokenizer too."""
    from knowundo_bench.benchmark.files import read_local_domain
    from knowundo_bench.benchmark.pairs import Benchmark
    from knowundo_bench.config.evaluation import EvalSpec
    from knowundo_bench.evaluate.scopes import with_answer_budget

    benchmark = Benchmark(tuple(read_local_domain(privacy_dir)))
    tokenizer = authors_tokenizer(benchmark.pairs[:200])
    encoder = PromptEncoder(tokenizer, 256, prompt_format="raw")
    lengths = [len(encoder.answer_ids(p.answer)) for p in benchmark.unlearn_val + benchmark.retention_val]
    budget = with_answer_budget(EvalSpec(), encoder, benchmark).max_new_tokens
    assert budget == max(lengths) + max(8, -(-max(lengths) // 10))
    assert max(lengths) > 64  # the old default cut these
    assert with_answer_budget(EvalSpec(max_new_tokens=64), encoder, benchmark).max_new_tokens == 64


def open_unlearning_simnpo(model, inputs, delta=0.0, beta=4.5, gamma=0.125, alpha=1.0) -> torch.Tensor:
    """open-unlearning's ``SimNPO.compute_loss`` (src/trainer/unlearn/simnpo.py) with the
    defaults of configs/trainer/SimNPO.yaml and its NLL retain loss."""
    forget_inputs = inputs["forget"]
    loss_mask = forget_inputs["labels"] != -100
    logits = model(input_ids=forget_inputs["input_ids"], attention_mask=forget_inputs["attention_mask"]).logits
    shifted_labels = forget_inputs["labels"][..., 1:]
    forget_nll = torch.nn.CrossEntropyLoss(ignore_index=-100, reduction="none")(
        logits[..., :-1, :].transpose(-1, -2), shifted_labels
    ).sum(dim=-1)
    forget_loss = forget_nll / loss_mask.sum(-1) - delta
    forget_loss = -torch.nn.functional.logsigmoid(beta * forget_loss).mean() * 2 / beta
    retain = inputs["retain"]
    retain_loss = model(
        input_ids=retain["input_ids"], attention_mask=retain["attention_mask"], labels=retain["labels"]
    ).loss
    return gamma * forget_loss + alpha * retain_loss


class KnowingModel(torch.nn.Module):
    """A causal LM stand-in that puts most of its mass on the next input token, so the
    forget NLL per token is small and SimNPO's term is not saturated (an untrained model's
    NLL makes log sigmoid(-beta * NLL) vanish whatever beta is)."""

    def __init__(self, vocab_size: int, confidence: float = 8.0):
        super().__init__()
        self.vocab_size, self.confidence = vocab_size, confidence
        self.noise = torch.nn.Parameter(0.5 * torch.randn(vocab_size, generator=torch.Generator().manual_seed(0)))

    def forward(self, input_ids, attention_mask=None, labels=None):
        following = torch.roll(input_ids, -1, dims=1)
        logits = self.confidence * torch.nn.functional.one_hot(following, self.vocab_size).float() + self.noise
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, self.vocab_size), labels[:, 1:].reshape(-1), ignore_index=-100
            )
        return SimpleNamespace(logits=logits, loss=loss)


def test_simnpo_defaults_follow_open_unlearning(tokenizer, raw, monkeypatch):
    """SimNPO's defaults (beta 4.5, NPO coefficient 0.125, retain NLL weight 1, margin 0)
    give open-unlearning's loss on a paired forget/retain batch, on a model that knows
    the forget answers. Fails with the earlier defaults (beta 2.5, no retain term) or a
    dropped coefficient."""
    from knowundo_bench.plugins.methods import simnpo
    from knowundo_bench.train.context import UnlearnContext
    from knowundo_bench.train.hook_types import MethodRun

    model = KnowingModel(len(tokenizer))
    captured = {}
    context = UnlearnContext(encoder=raw, seed=0)
    monkeypatch.setattr(UnlearnContext, "train", lambda self, model, **kw: captured.update(kw))
    params = simnpo.SimNPOParams()
    simnpo.unlearn(
        method=MethodRun("simnpo", "simnpo", params, 0), model=model, forget=FORGET, retain=RETAIN, context=context
    )
    assert captured["retain"] == RETAIN  # the retain term is on by default
    batch = {
        "forget": raw.collate(raw.encode_all(FORGET[:3], with_eos=False)),
        "retain": raw.collate(raw.encode_all(RETAIN[:3], with_eos=False)),
    }
    ours = captured["objective"](model, batch)
    official = open_unlearning_simnpo(model, batch)
    forget_term = official - model(**batch["retain"]).loss
    assert forget_term.item() > 0.01  # the SimNPO term counts in the comparison
    assert ours.item() == pytest.approx(official.item(), rel=1e-5)


@pytest.mark.parametrize("domain", ["privacy", "copyright"])
def test_paper_llama2_specs_follow_the_official_scripts(domain):
    """paper-*-llama2.yaml as the official run scripts: LoRA r 8, alpha 16, dropout 0.1 on
    every linear layer with bf16 adapters (peft 0.10), unlearning at 256 tokens and
    pretraining and localisation at 500, the baselines from the 10-epoch 1e-4 adapter and
    MemFlex from the 20-epoch 3e-4 one, the domain's official evaluation prefix, and
    ROUGE-L's budget from the answers. Fails if any of these drifts."""
    from conftest import SPECS_DIR
    from knowundo_bench.config.evaluation import OFFICIAL_PREFIXES
    from knowundo_bench.plugin.manager import get_plugins
    from knowundo_bench.run.plan import plan_units
    from knowundo_bench.run.resolution import load_spec

    resolved = load_spec(SPECS_DIR / f"paper-{domain}-llama2.yaml", get_plugins())
    spec, lora = resolved.spec, resolved.model_params.lora
    assert (lora.r, lora.alpha, lora.dropout, lora.target_modules, lora.dtype) == (8, 16, 0.1, "all-linear", "base")
    assert resolved.model_params.dtype == "bfloat16" and spec.model.max_length == 256
    baseline = spec.vanilla
    assert (baseline.epochs, baseline.lr, baseline.batch_size, baseline.grad_accum) == (10, 1e-4, 16, 4)
    assert (baseline.weight_decay, baseline.max_length) == (1e-4, 500)
    for method in resolved.methods:
        own = method.vanilla or baseline
        if method.info.name == "memflex":
            assert (own.epochs, own.lr, own.max_length) == (20, 3e-4, 500)
            assert method.localizer.params.max_length == 500
        else:
            assert own is baseline
    starts = {unit.label: unit.start for unit in plan_units(resolved)}
    assert starts["memflex"] == "vanilla-memflex" and starts["ga"] == starts["ga_kl"] == "vanilla"
    assert spec.eval.prompt_prefixes[f"{domain}_sensitive"] == OFFICIAL_PREFIXES[domain]
    assert OFFICIAL_PREFIXES[domain].startswith(f"You are a {domain}-sensitive assistant.")
    assert spec.eval.max_new_tokens is None


@pytest.mark.parametrize("domain", ["privacy", "copyright"])
def test_paper_tiny_specs_use_the_official_prefix_and_lengths(domain):
    from conftest import SPECS_DIR
    from knowundo_bench.config.evaluation import OFFICIAL_PREFIXES
    from knowundo_bench.plugin.manager import get_plugins
    from knowundo_bench.run.resolution import load_spec

    resolved = load_spec(SPECS_DIR / f"paper-{domain}-tiny.yaml", get_plugins())
    spec = resolved.spec
    assert spec.eval.prompt_prefixes[f"{domain}_sensitive"] == OFFICIAL_PREFIXES[domain]
    assert (spec.model.max_length, spec.vanilla.max_length, spec.eval.max_new_tokens) == (256, 500, None)
    [memflex] = [m for m in resolved.methods if m.info.name == "memflex"]
    assert memflex.localizer.params.max_length == 500
