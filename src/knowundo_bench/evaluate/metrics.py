"""Metric primitives (paper section 2.3.1), each testable on hand-made tensors.

* Success: teacher-forced next-token argmax accuracy over answer tokens, averaged per
  example and then over examples (the official evaluation). Unlearn Success is 100
  minus that accuracy on the Unlearn Scope; Retention Success is the accuracy itself.
* Perplexity: equation 5 per example (its mean answer-token negative log-likelihood),
  then exp of the mean over examples, as the official ``compute_min_k_ppl_acc`` (ratio
  1) computes it; natural logs (the base cancels). ``ppl_token`` pools the tokens of the
  whole split instead (the earlier reading). Overflow gives ``inf``.
* ROUGE-L: F-measure between the greedy answer and the reference (rouge-score).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from knowundo_bench.benchmark.encoding import IGNORE_INDEX


def shifted(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Align position t's logits with token t+1 (causal LM)."""
    return logits[:, :-1, :], labels[:, 1:]


def per_example_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of answer tokens whose argmax prediction is the gold token, per example.

    Examples without answer tokens get NaN (callers drop them).
    """
    logits, labels = shifted(logits, labels)
    mask = labels != IGNORE_INDEX
    correct = (logits.argmax(dim=-1) == labels) & mask
    counts = mask.sum(dim=1)
    return correct.sum(dim=1).double() / counts.double()


def example_nll_sums(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example: the summed answer-token negative log-likelihood (float32) and the
    number of answer tokens; one cross-entropy pass serves every reduction below."""
    logits, labels = shifted(logits, labels)
    losses = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none"
    ).view(labels.shape)
    return losses.sum(dim=1), (labels != IGNORE_INDEX).sum(dim=1)


def answer_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
    """Sum of answer-token negative log-likelihoods and the number of answer tokens."""
    sums, counts = example_nll_sums(logits, labels)
    return float(sums.sum()), int(counts.sum())


def perplexity(nll_sum: float, n_tokens: int) -> float:
    """exp(mean NLL); ``inf`` on overflow or non-finite NLL, never an exception."""
    if n_tokens == 0:
        return float("nan")
    mean = nll_sum / n_tokens
    if math.isnan(mean):
        return float("nan")
    try:
        return math.exp(mean)
    except OverflowError:
        return float("inf")


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure in [0, 1]."""
    return float(_rouge_scorer().score(reference, prediction)["rougeL"].fmeasure)
