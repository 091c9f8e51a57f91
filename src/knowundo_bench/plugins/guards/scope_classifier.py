"""Guard ``scope_classifier``: the paper's Finding 3 baseline (section 4.2).

The paper trains a RoBERTa classifier to tell the scopes apart (Unlearn Scope = 1,
Retention Scope = 0) and answers only what it labels 0: on privacy it reaches Unlearn
Success 83.63 and Retention Success 96.29, and Unlearn Success falls to 51.25 once the
Finding 2 system prompt is prepended to the request. Offline default: a logistic
regression over the vanilla model's hidden states of the request, mean-pooled over its
tokens (``pooling: mean``) or the last token's (``pooling: last``); the frozen copy of the
model is the guard's own. ``model_path``: instead
fine-tune a local sequence-classification model (``AutoModelForSequenceClassification``,
e.g. a RoBERTa folder) on the request texts, as the paper does.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from pydantic import DirectoryPath, Field

from knowundo_bench.api import (
    REFUSAL,
    GuardContext,
    GuardInfo,
    GuardRequest,
    InputError,
    Params,
    hookimpl,
    model_device,
)


class ScopeClassifierParams(Params):
    pooling: Literal["mean", "last"] = Field(
        "mean", description="how the request's hidden states become one vector: their mean, or the last token's"
    )
    layer: int = Field(-1, description="which hidden layer to pool (-1: the last)")
    model_path: DirectoryPath | None = Field(
        None, description="a local sequence-classification model to fine-tune instead (e.g. RoBERTa)"
    )
    epochs: int = Field(300, ge=1, description="optimisation steps of the logistic regression")
    lr: float = Field(0.05, gt=0, description="the logistic regression's learning rate (Adam)")
    finetune_epochs: int = Field(3, ge=1, description="model_path: epochs of fine-tuning")
    finetune_lr: float = Field(2e-5, gt=0, description="model_path: learning rate of fine-tuning (AdamW)")
    threshold: float = Field(0.5, gt=0, lt=1, description="refuse when P(Unlearn Scope) is at least this")
    batch_size: int = Field(32, ge=1)
    refusal: str = Field(REFUSAL, min_length=1, description="what a refused request gets")


class HiddenStateClassifier:
    """Logistic regression on standardised mean-pooled hidden states of a frozen model."""

    def __init__(self, model: torch.nn.Module, params: ScopeClassifierParams) -> None:
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)
        self.params = params
        self.refusal = params.refusal
        # set by fit: standardisation and the logistic regression's weights
        self.mean = self.scale = self.weight = self.bias = torch.zeros(())

    @torch.no_grad()
    def features(self, requests: Sequence[GuardRequest]) -> torch.Tensor:
        device = model_device(self.model)
        rows = []
        for start in range(0, len(requests), self.params.batch_size):
            chunk = requests[start : start + self.params.batch_size]
            width = max(len(r.input_ids) for r in chunk)
            ids = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, request in enumerate(chunk):
                ids[row, : len(request.input_ids)] = torch.tensor(request.input_ids)
                mask[row, : len(request.input_ids)] = 1
            out = self.model(input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=True)
            layers = len(out.hidden_states)
            if not -layers <= self.params.layer < layers:
                raise InputError(f"guard.layer: {self.params.layer} but the model has hidden states 0..{layers - 1}")
            hidden = out.hidden_states[self.params.layer].float()
            if self.params.pooling == "last":  # right-padded: each row's last real position
                last = mask.sum(1).to(device) - 1
                rows.append(hidden[torch.arange(len(chunk), device=device), last].cpu())
            else:
                weights = mask.to(device).unsqueeze(-1).float()
                rows.append(((hidden * weights).sum(1) / weights.sum(1)).cpu())
        return torch.cat(rows)

    def fit(self, requests: Sequence[GuardRequest], labels: torch.Tensor, seed: int) -> float:
        """Train on the requests (label 1: Unlearn Scope), classes weighted to balance;
        returns the training accuracy."""
        x = self.features(requests)
        self.mean, self.scale = x.mean(0), x.std(0, unbiased=False).clamp(min=1e-6)
        x = (x - self.mean) / self.scale
        generator = torch.Generator().manual_seed(seed)
        weight = (torch.randn(x.shape[1], generator=generator) * 0.01).requires_grad_(True)
        bias = torch.zeros((), requires_grad=True)
        positive = float(labels.mean())
        class_weights = torch.where(labels > 0, 0.5 / max(positive, 1e-6), 0.5 / max(1 - positive, 1e-6))
        optimizer = torch.optim.Adam([weight, bias], lr=self.params.lr, weight_decay=1e-3)
        for _ in range(self.params.epochs):
            optimizer.zero_grad()
            logits = x @ weight + bias
            loss = (
                torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none") * class_weights
            ).mean()
            loss.backward()
            optimizer.step()
        self.weight, self.bias = weight.detach(), bias.detach()
        return float(((self.probabilities_of(x) >= self.params.threshold).float() == labels).float().mean())

    def probabilities_of(self, standardised: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(standardised @ self.weight + self.bias)

    def refuses(self, requests: Sequence[GuardRequest]) -> list[bool]:
        x = (self.features(requests) - self.mean) / self.scale
        return [bool(p >= self.params.threshold) for p in self.probabilities_of(x)]


class SequenceClassifier:
    """A local ``AutoModelForSequenceClassification`` fine-tuned on the request texts."""

    def __init__(self, params: ScopeClassifierParams, device: torch.device) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(params.model_path)  # type: ignore[arg-type]
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=2, local_files_only=True, use_safetensors=True
        ).to(device)
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.params = params
        self.refusal = params.refusal

    def _batches(self, texts: Sequence[str]):
        for start in range(0, len(texts), self.params.batch_size):
            chunk = list(texts[start : start + self.params.batch_size])
            yield (
                start,
                self.tokenizer(chunk, return_tensors="pt", padding=True, truncation=True, max_length=256).to(
                    self.model.device
                ),
            )

    def fit(self, requests: Sequence[GuardRequest], labels: torch.Tensor, seed: int) -> float:
        texts = [r.text for r in requests]
        order = list(range(len(texts)))
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.params.finetune_lr)
        self.model.train()
        rng = random.Random(seed)
        for _ in range(self.params.finetune_epochs):
            rng.shuffle(order)
            shuffled = [texts[i] for i in order]
            for start, batch in self._batches(shuffled):
                targets = labels[order[start : start + self.params.batch_size]].long().to(self.model.device)
                loss = self.model(**batch, labels=targets).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
        self.model.eval()
        predicted = torch.tensor(self.refuses(requests), dtype=torch.float32)
        return float((predicted == labels).float().mean())

    @torch.no_grad()
    def refuses(self, requests: Sequence[GuardRequest]) -> list[bool]:
        decisions: list[bool] = []
        for _, batch in self._batches([r.text for r in requests]):
            probabilities = self.model(**batch).logits.float().softmax(-1)[:, 1]
            decisions += [bool(p >= self.params.threshold) for p in probabilities]
        return decisions


def fit(params: ScopeClassifierParams, context: GuardContext):
    requests = context.requests(context.forget) + context.requests(context.retain)
    labels = torch.tensor([1.0] * len(context.forget) + [0.0] * len(context.retain))
    if params.model_path is None:
        guard: HiddenStateClassifier | SequenceClassifier = HiddenStateClassifier(context.model, params)
    else:
        guard = SequenceClassifier(params, model_device(context.model))
    context.details["train_accuracy"] = guard.fit(requests, labels, context.seed)
    context.details["train_requests"] = {"unlearn": len(context.forget), "retention": len(context.retain)}
    return guard


@hookimpl
def register_guards() -> list[GuardInfo]:
    return [
        GuardInfo(
            name="scope_classifier",
            description="Finding 3: a classifier of request scope (Unlearn = refuse) in front of the model.",
            params=ScopeClassifierParams,
            fit=fit,
        )
    ]
