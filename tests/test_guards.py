"""Guards (issue 16): request filters in front of a model, scored as a user meets them;
the scope classifier of Finding 3; a third-party guard through the entry-point group."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from helpers import (
    TINY_SPEC,
    authors_model,
    authors_tokenizer,
    one_epoch,
    plugin_site,
    table_row_names,
    two_authors,
)
from knowundo_bench.benchmark.encoding import PromptEncoder
from knowundo_bench.config.evaluation import EvalSpec
from knowundo_bench.evaluate.guarding import REFUSAL, GuardContext, GuardRequest
from knowundo_bench.evaluate.scopes import NamedGuard, scope_metrics, score_split
from knowundo_bench.plugin.manager import get_plugins
from knowundo_bench.run.resolution import parse_spec


class Keyword:
    """Refuses any request that mentions one of ``words``."""

    refusal = REFUSAL

    def __init__(self, *words: str) -> None:
        self.words = words
        self.seen: list[str] = []

    def refuses(self, requests):
        self.seen += [r.text for r in requests]
        return [any(word in r.text for word in self.words) for r in requests]


@pytest.fixture(scope="module")
def authors():
    pairs, _, _ = two_authors()
    tokenizer = authors_tokenizer(pairs)
    return pairs, tokenizer, authors_model(tokenizer)


def test_a_refused_request_counts_as_forgotten_and_leaves_perplexity(authors):
    """Refused: accuracy 0 (answer tokens never produced), ROUGE-L of the refusal text, no
    perplexity reading; answered requests keep their readings. Fails if refusals were
    scored as the model's own answers."""
    pairs, tokenizer, model = authors
    encoder = PromptEncoder(tokenizer, 96)
    val = [p for p in pairs if p.split == "val" and p.scope == "unlearn"]
    spec = EvalSpec(batch_size=8, max_new_tokens=4, prompt_prefixes={})
    plain = score_split(model, encoder, val, spec)
    email = [i for i, p in enumerate(val) if "email" in p.question]
    assert 0 < len(email) < len(val)
    guarded = score_split(model, encoder, val, spec, guard=NamedGuard("keyword", Keyword("email")))
    assert guarded.refused == tuple(i in email for i in range(len(val)))
    assert guarded.refusal_rate == pytest.approx(100 * len(email) / len(val))
    for i in range(len(val)):
        if i in email:
            assert guarded.example_accuracy[i] == 0.0 and math.isnan(guarded.example_nll[i])
            assert guarded.generations[i] == REFUSAL
        else:
            assert guarded.example_accuracy[i] == plain.example_accuracy[i]
            assert guarded.generations[i] == plain.generations[i]
    answered = [plain.example_nll[i] for i in range(len(val)) if i not in email]
    assert guarded.ppl == pytest.approx(math.exp(sum(answered) / len(answered)))
    everything = score_split(model, encoder, val, spec, guard=NamedGuard("keyword", Keyword("")))
    metrics = scope_metrics(everything, everything)
    assert metrics["unlearn"]["success"] == 100.0 and metrics["unlearn"]["refusal_rate"] == 100.0
    assert math.isnan(metrics["unlearn"]["ppl"])
    assert "refusal_rate" not in scope_metrics(plain, plain)["unlearn"]  # unguarded records are unchanged


def test_the_guard_sees_the_prompt_prefix(authors):
    pairs, tokenizer, model = authors
    encoder = PromptEncoder(tokenizer, 96).with_prefix(system_prompt="You are a helpful assistant.")
    guard = Keyword("helpful")
    val = [p for p in pairs if p.split == "val"][:3]
    scores = score_split(model, encoder, val, EvalSpec(rouge=False, prompt_prefixes={}), guard=NamedGuard("k", guard))
    assert all("You are a helpful assistant." in text for text in guard.seen)
    assert scores.refused == (True, True, True)


def train_context(pairs, tokenizer, model) -> GuardContext:
    """What a guard is fitted from: both scopes' train questions and the vanilla model."""
    return GuardContext(
        model=model,
        encoder=PromptEncoder(tokenizer, 96),
        forget=[p for p in pairs if p.scope == "unlearn" and p.split == "train"],
        retain=[p for p in pairs if p.scope == "retention" and p.split == "train"],
        seed=0,
    )


def test_scope_classifier_learns_the_scopes_of_the_train_questions(authors):
    pairs, tokenizer, model = authors
    from knowundo_bench.plugins.guards import scope_classifier

    context = train_context(pairs, tokenizer, model)
    before = [p.detach().clone() for p in model.parameters()]
    guard = scope_classifier.fit(scope_classifier.ScopeClassifierParams(), context)
    assert context.details["train_accuracy"] >= 0.9
    decisions = guard.refuses(context.requests(context.forget + context.retain))
    assert sum(decisions[: len(context.forget)]) >= 0.9 * len(context.forget)
    assert sum(decisions[len(context.forget) :]) <= 0.1 * len(context.retain)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # the model is untouched
    assert isinstance(context.requests(pairs[:1])[0], GuardRequest)


def test_guard_entries_are_validated_and_label_the_row(tmp_path):
    from knowundo_bench.core.errors import InputError
    from knowundo_bench.run.identity import method_seed
    from knowundo_bench.run.resolution import load_spec

    plugins = get_plugins()
    resolved = parse_spec({**TINY_SPEC, "methods": [{"name": "none", "guard": "scope_classifier"}]}, plugins)
    [method] = resolved.methods
    assert method.label == "none-scope_classifier" and method.guard.info.name == "scope_classifier"
    # a method and its guarded twin side by side, and an all-parameters control that keeps the guard
    localised = {"name": "memflex", "ablate_localization": True}
    twins = parse_spec(
        {**TINY_SPEC, "methods": ["memflex", {**localised, "guard": "scope_classifier"}]}, plugins
    ).methods
    assert [m.label for m in twins] == [
        "memflex",
        "memflex-scope_classifier",
        "memflex-scope_classifier-all-params",
    ]
    assert twins[2].guard is not None and twins[2].ablation_of == "memflex-scope_classifier"
    resolved = parse_spec({**TINY_SPEC, "methods": ["ga"]}, plugins)
    assert len({method_seed(resolved, m) for m in twins}) == 1  # the guard changes nothing in training
    with pytest.raises(InputError, match="duplicate method label 'none-g'"):
        parse_spec(
            {**TINY_SPEC, "methods": [{"name": "none", "guard": "g"}, {"name": "ga", "label": "none-g"}]}, plugins
        )
    # a relative model_path is read from the spec's folder
    (tmp_path / "specs" / "classifier").mkdir(parents=True)
    guarded = {"name": "none", "guard": {"name": "scope_classifier", "model_path": "classifier"}}
    (tmp_path / "specs" / "spec.yaml").write_text(yaml.safe_dump({**TINY_SPEC, "methods": [guarded]}))
    [anchored] = load_spec(tmp_path / "specs" / "spec.yaml", plugins).methods
    assert anchored.guard.params.model_path == tmp_path / "specs" / "classifier"

    with pytest.raises(InputError, match=r"methods\.0\.guard\.name: unknown guard 'scope_classifer'; did you mean"):
        parse_spec({**TINY_SPEC, "methods": [{"name": "none", "guard": "scope_classifer"}]}, plugins)
    with pytest.raises(InputError, match=r"methods\.0\.guard\.threshold"):
        parse_spec(
            {**TINY_SPEC, "methods": [{"name": "none", "guard": {"name": "scope_classifier", "threshold": 2}}]},
            plugins,
        )


KEYWORD_GUARD = '''
"""A third-party guard: refuse requests that mention any of some words."""
from pydantic import Field

from knowundo_bench.api import REFUSAL, GuardInfo, Params, hookimpl


class KeywordParams(Params):
    words: list[str] = Field(default_factory=lambda: ["email", "address", "parents"])


class KeywordGuard:
    refusal = REFUSAL

    def __init__(self, words):
        self.words = [w.lower() for w in words]

    def refuses(self, requests):
        return [any(w in r.text.lower() for w in self.words) for r in requests]


def fit(params, context):
    context.details["words"] = params.words
    return KeywordGuard(params.words)


@hookimpl
def register_guards():
    return [GuardInfo(name="keyword_guard", description="Refuses requests naming a word (third party).",
                      params=KeywordParams, fit=fit)]
'''


def cli(args: list[str], site: Path | None, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "250", **({"PYTHONPATH": str(site)} if site else {})}
    return subprocess.run(
        [sys.executable, "-m", "knowundo_bench", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_a_third_party_guard_registers_through_its_entry_point_and_guards_a_run(tmp_path):
    site = plugin_site(
        tmp_path / "site", "knowundo_keyword_guard", KEYWORD_GUARD, "knowundo-keyword", "0.1.0", "keyword_guard"
    )
    listing = cli(["methods"], site, tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "Guards" in listing.stdout and "scope_classifier" in listing.stdout
    line = next(row for row in listing.stdout.splitlines() if "keyword_guard" in row)
    assert "knowundo-keyword 0.1.0" in line
    guarded_ga = {**one_epoch("ga"), "guard": {"name": "keyword_guard", "words": ["email"]}}  # beside a method
    spec = {
        **TINY_SPEC,
        "methods": [{"name": "none", "guard": {"name": "keyword_guard", "words": ["email"]}}, guarded_ga],
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = cli(["run", "spec.yaml", "--output", "out", "--no-progress"], site, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "none-keyword_guard" in table_row_names(result.stdout) and "guarded rows" in result.stdout
    record = json.loads((tmp_path / "out" / "none-keyword_guard.json").read_text())
    assert record["guard"]["name"] == "keyword_guard" and record["guard"]["words"] == ["email"]
    # one of the three Unlearn attributes is refused: a third of the unlearn val requests, no retention one
    assert record["metrics"]["unlearn"]["refusal_rate"] == pytest.approx(100 / 3)
    assert record["guard"]["accuracy"] == {"unlearn": pytest.approx(100 / 3), "retention": 100.0}
    vanilla = json.loads((tmp_path / "out" / "vanilla.json").read_text())
    assert record["metrics"]["unlearn"]["success"] > vanilla["metrics"]["unlearn"]["success"]
    ga = json.loads((tmp_path / "out" / "ga-keyword_guard.json").read_text())
    assert ga["training"]["steps"] > 0 and ga["metrics"]["unlearn"]["refusal_rate"] == pytest.approx(100 / 3)


@pytest.mark.slow
def test_scope_classifier_on_the_synthetic_privacy_domain_with_and_without_the_prefix(tmp_path):
    """Finding 3's run: Unlearn and Retention Success with and without the system prompt,
    and the classifier's own accuracy, in the record."""
    spec = {
        "name": "finding3",
        "data": {"source": "synthetic", "n_authors": 8},
        "model": {"source": "tiny", "device": "cpu", "hidden_size": 64, "num_layers": 2, "num_heads": 4},
        "vanilla": {"epochs": 30, "lr": 3e-3, "batch_size": 32, "grad_accum": 1, "warmup_ratio": 0.1},
        "methods": [{"name": "none", "guard": "scope_classifier"}],
        "eval": {"batch_size": 64, "max_new_tokens": 8},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = cli(["run", "spec.yaml", "--output", "out", "--no-progress"], None, tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "out" / "none-scope_classifier.json").read_text())
    guard, metrics = record["guard"], record["metrics"]
    assert guard["train_accuracy"] >= 0.95
    assert guard["accuracy"]["unlearn"] >= 90 and guard["accuracy"]["retention"] >= 90
    assert set(guard["prefixed_accuracy"]) == {"helpful_assistant"}
    prefixed = metrics["prompt_prefixes"]["helpful_assistant"]
    assert metrics["unlearn"]["success"] >= 90 and "refusal_rate" in prefixed["unlearn"]
    refused = metrics["raw"]["unlearn"]["example_refused"]  # per request, as the guard decided
    assert guard["accuracy"]["unlearn"] == pytest.approx(100 * sum(refused) / len(refused))
    assert 0 <= prefixed["unlearn"]["refusal_rate"] <= 100


def test_scope_classifier_fine_tunes_a_local_sequence_classification_model(authors, tmp_path):
    """``model_path``: the paper's route (a RoBERTa-style classifier), from a local folder
    (safetensors only; here a 1-layer Llama classification head on the tiny tokenizer)."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from knowundo_bench.plugins.guards import scope_classifier

    pairs, tokenizer, model = authors
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=128, num_labels=2, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    folder = tmp_path / "classifier"
    LlamaForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    assert not list(folder.glob("*.bin"))
    context = train_context(pairs, tokenizer, model)
    params = scope_classifier.ScopeClassifierParams(model_path=folder, finetune_epochs=30, finetune_lr=3e-3)
    guard = scope_classifier.fit(params, context)
    assert context.details["train_accuracy"] >= 0.9  # learnt from 4 words of difference per question
    assert len(guard.refuses(context.requests(pairs[:5]))) == 5
