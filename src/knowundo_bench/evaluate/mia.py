"""Membership inference: can the model's likelihoods tell the forget set (members: the
Unlearn Scope's train pairs it was fine-tuned on) from the holdout's Unlearn Scope pairs
(non-members: ``data.holdout_instances``, never trained on)? A model that truly forgot
answers both alike (AUC near the retrain oracle's); a shallow forgetting leaves the
members recognisable.

Each attack scores an example's answer tokens under the model, higher meaning "more
likely a member", and the AUC is the probability that a random member scores above a
random non-member (ties count a half: the Mann-Whitney statistic, sklearn's
``roc_auc_score``). With :math:`\\log p_t` the log-probability of answer token t:

* LOSS (Yeom et al., 2018): the mean :math:`\\log p_t` (minus the answer's loss).
* zlib (Carlini et al., USENIX Security 2021): the mean :math:`\\log p_t` divided by the
  zlib-compressed length of the answer in bytes (their ratio of log-perplexity to zlib
  entropy, sign flipped to "higher is member").
* Min-K% (Shi et al., ICLR 2024): the mean of the ``k`` fraction (at least one) of the
  lowest :math:`\\log p_t`.
* Min-K%++ (Zhang et al., ICLR 2025): the same over
  :math:`(\\log p_t - \\mu_t) / \\sigma_t`, where :math:`\\mu_t` and :math:`\\sigma_t^2` are
  the mean and variance of :math:`\\log p(z)` under the model's own next-token
  distribution :math:`z \\sim p(\\cdot \\mid x_{<t})` at that position.

The scores and the AUC's direction are open-unlearning's (``src/evals/metrics/mia``: its
scores are the negatives of these, with the holdout labelled 1). ``privleak`` (MUSE, Shi
et al. 2024) compares a model's Min-K% AUC with the retrain oracle's; the leaderboard
computes it (:func:`knowundo_bench.leaderboard.aggregate.privleak`), as it needs the
oracle's record.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from knowundo_bench.benchmark.encoding import IGNORE_INDEX, PromptEncoder, length_sorted_batches
from knowundo_bench.benchmark.pairs import Benchmark, QAPair
from knowundo_bench.config.evaluation import MiaSpec
from knowundo_bench.evaluate.metrics import shifted
from knowundo_bench.modeling.devices import model_device, train_mode

ATTACKS = ("loss", "zlib", "mink", "minkpp")


@dataclass(frozen=True)
class TokenReadings:
    """One example's answer tokens: each one's log-probability and its Min-K%++
    standardised score."""

    log_probs: tuple[float, ...]
    standardised: tuple[float, ...]


def lowest_mean(values: Sequence[float], k: float) -> float:
    """The mean of the ``k`` fraction of the lowest values (at least one; open-unlearning's
    ``int(len * k)``)."""
    count = max(1, int(len(values) * k))
    return sum(sorted(values)[:count]) / count


def zlib_length(text: str) -> int:
    return len(zlib.compress(text.encode("utf-8")))


def membership_scores(readings: TokenReadings, answer: str, k: float) -> dict[str, float]:
    """Each attack's score of one example (higher: more likely a member)."""
    mean_log_prob = sum(readings.log_probs) / len(readings.log_probs)
    return {
        "loss": mean_log_prob,
        "zlib": mean_log_prob / zlib_length(answer),
        "mink": lowest_mean(readings.log_probs, k),
        "minkpp": lowest_mean(readings.standardised, k),
    }


def auc(members: Sequence[float], non_members: Sequence[float]) -> float:
    """P(a member scores above a non-member), ties a half (the ROC curve's area); NaN
    when either side is empty."""
    if not members or not non_members:
        return float("nan")
    wins = sum((m > n) + 0.5 * (m == n) for m in members for n in non_members)
    return wins / (len(members) * len(non_members))


@torch.no_grad()
def token_readings(
    model: torch.nn.Module, encoder: PromptEncoder, pairs: Sequence[QAPair], batch_size: int
) -> list[TokenReadings | None]:
    """Teacher-forced readings of each pair's answer tokens (None: none left within
    ``model.max_length``)."""
    encoded = encoder.encode_all(pairs, with_eos=False)
    found: list[TokenReadings | None] = [None] * len(encoded)
    with train_mode(model, False):
        for indices, batch in length_sorted_batches(encoder, encoded, batch_size, model_device(model)):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            logits, labels = shifted(logits, batch["labels"])
            mask = labels != IGNORE_INDEX
            # the answer positions only: the vocabulary-wide tensors below hold no prompt or padding
            log_probs = F.log_softmax(logits[mask].float(), dim=-1)
            answer = labels[mask]
            token = log_probs.gather(-1, answer.unsqueeze(-1)).squeeze(-1)
            probs = log_probs.exp()
            mean = (probs * log_probs).sum(-1)
            variance = (probs * log_probs.square()).sum(-1) - mean.square()
            standardised = (token - mean) / variance.clamp(min=1e-12).sqrt()
            counts = mask.sum(dim=1).tolist()
            readings = zip(indices, token.double().split(counts), standardised.double().split(counts), strict=True)
            for index, tokens, scores in readings:
                found[index] = TokenReadings(tuple(tokens.tolist()), tuple(scores.tolist())) if len(tokens) else None
    return found


def attack_aucs(
    model: torch.nn.Module,
    encoder: PromptEncoder,
    members: Sequence[QAPair],
    non_members: Sequence[QAPair],
    spec: MiaSpec,
) -> tuple[dict[str, float], tuple[int, int]]:
    """Each attack's AUC of members against non-members, and how many of each had an
    answer token to score."""
    scored = []
    for pairs in (members, non_members):
        readings = token_readings(model, encoder, pairs, spec.batch_size)
        scored.append(
            [
                membership_scores(reading, pair.answer, spec.k)
                for reading, pair in zip(readings, pairs, strict=True)
                if reading is not None
            ]
        )
    aucs = {attack: auc([s[attack] for s in scored[0]], [s[attack] for s in scored[1]]) for attack in ATTACKS}
    return aucs, (len(scored[0]), len(scored[1]))


def membership_inference(
    model: torch.nn.Module,
    encoder: PromptEncoder,
    benchmark: Benchmark,
    spec: MiaSpec,
    left_out: Collection[QAPair] = (),
) -> dict[str, float | int] | None:
    """The record's ``mia`` section (AUCs in [0, 1]), or None without a holdout (or
    without a member left once ``left_out``, the pairs an attack retaught, are removed)."""
    retaught = set(left_out)
    members = [pair for pair in benchmark.forget if pair not in retaught]
    if not benchmark.non_members or not members:
        return None
    aucs, counts = attack_aucs(model, encoder, members, benchmark.non_members, spec)
    result: dict[str, float | int] = {f"auc_{attack}": value for attack, value in aucs.items()}
    result.update(k=spec.k, members=counts[0], non_members=counts[1])
    return result
