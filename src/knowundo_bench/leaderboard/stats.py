"""Statistics over seeds and val pairs: confidence intervals and paired comparisons.

* **Intervals over seeds.** A metric's seeds are few (3-5), so its 95% interval is
  Student's t over the per-seed values: mean ± t(0.975, n-1) · s/√n. Perplexity is
  averaged geometrically (its t-interval is taken on log perplexity and exponentiated),
  since one diverged seed would otherwise dominate an arithmetic mean.
* **Comparisons.** Two methods' Avg Success is compared with a paired hierarchical
  bootstrap: each resample draws seeds with replacement (the same seeds for both
  methods), then within each drawn seed the val pairs of each scope with replacement
  (the same pairs for both), and recomputes both Avg Successes from the per-pair
  teacher-forced accuracies. The 95% interval of the difference is the 2.5th and 97.5th
  percentiles of 2000 resamples. Seeds vary training; pairs vary the questions: the
  bootstrap accounts for both sources of noise, which a t-test over seeds alone ignores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy
from scipy import stats as scipy_stats

RESAMPLES = 2000
LEVEL = 0.95
INTERVAL_NOTE = "mean ± half-width of a 95% Student-t interval over seeds; perplexity: geometric mean over seeds"
BOOTSTRAP_NOTE = (
    f"paired hierarchical bootstrap over seeds and val pairs ({RESAMPLES} resamples, 95% interval of the difference)"
)


def t_interval(values: Sequence[float | None]) -> tuple[float, tuple[float, float] | None]:
    """Mean and 95% Student-t interval over ``values``; no interval for fewer than two
    values or a non-finite one (the mean is then NaN or infinite)."""
    if not values or any(v is None or math.isnan(v) for v in values):
        return float("nan"), None
    finite = [float(v) for v in values if v is not None]
    mean = sum(finite) / len(finite)
    if len(finite) < 2 or not math.isfinite(mean):
        return mean, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
    half = float(scipy_stats.t.ppf(0.5 + LEVEL / 2, len(finite) - 1)) * sd / math.sqrt(len(finite))
    return mean, (mean - half, mean + half)


def geometric_interval(values: Sequence[float | None]) -> tuple[float, tuple[float, float] | None]:
    """Geometric mean and the exponentiated t-interval of the logs (perplexities)."""
    if not values or any(v is None or math.isnan(v) for v in values):
        return float("nan"), None
    finite = [float(v) for v in values if v is not None]
    if any(v <= 0 for v in finite):
        return float("nan"), None
    if any(math.isinf(v) for v in finite):
        return math.inf, None
    mean, interval = t_interval([math.log(v) for v in finite])
    return math.exp(mean), None if interval is None else (math.exp(interval[0]), math.exp(interval[1]))


@dataclass(frozen=True)
class PairScores:
    """One method's per-pair teacher-forced accuracies (0-100) per seed, by scope:
    ``unlearn[seed]`` and ``retention[seed]`` are arrays over the val pairs."""

    unlearn: dict[int, numpy.ndarray]
    retention: dict[int, numpy.ndarray]

    def seeds(self) -> set[int]:
        return set(self.unlearn) & set(self.retention)


def _avg_success(unlearn: numpy.ndarray, retention: numpy.ndarray) -> numpy.ndarray:
    """Avg Success per resample from (resamples, seeds, pairs) accuracies."""
    u = numpy.nanmean(unlearn, axis=2).mean(axis=1)
    r = numpy.nanmean(retention, axis=2).mean(axis=1)
    return ((100.0 - u) + r) / 2


def paired_difference(
    first: PairScores, second: PairScores, *, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, tuple[float, float]] | None:
    """``first`` minus ``second`` in Avg Success, with the 95% paired hierarchical
    bootstrap interval; None when they share no seed or their val pairs differ."""
    seeds = sorted(first.seeds() & second.seeds())
    if not seeds:
        return None
    scopes = []
    for scope in ("unlearn", "retention"):
        a = numpy.stack([getattr(first, scope)[s] for s in seeds])
        b = numpy.stack([getattr(second, scope)[s] for s in seeds])
        if a.shape != b.shape or a.shape[1] == 0:
            return None
        scopes.append((a, b))
    rng = numpy.random.default_rng(seed)
    seed_draw = rng.integers(0, len(seeds), size=(resamples, len(seeds)))
    estimates = []
    for a, b in scopes:
        pair_draw = rng.integers(0, a.shape[1], size=(resamples, len(seeds), a.shape[1]))
        estimates.append((a[seed_draw[..., None], pair_draw], b[seed_draw[..., None], pair_draw]))
    (ua, ub), (ra, rb) = estimates
    differences = _avg_success(ua, ra) - _avg_success(ub, rb)
    (unlearn_a, unlearn_b), (retention_a, retention_b) = scopes
    observed = float(
        _avg_success(unlearn_a[None], retention_a[None])[0] - _avg_success(unlearn_b[None], retention_b[None])[0]
    )
    low, high = numpy.nanpercentile(differences, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return observed, (float(low), float(high))


def unpaired_difference(
    first: PairScores, second: PairScores, *, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, tuple[float, float]] | None:
    """``first`` minus ``second`` in Avg Success across two runs: each run's seeds and
    pairs are resampled independently (their seeds are not the same training runs)."""
    rng = numpy.random.default_rng(seed)

    def draws(scores: PairScores) -> tuple[float, numpy.ndarray] | None:
        seeds = sorted(scores.seeds())
        if not seeds:
            return None
        arrays = [numpy.stack([getattr(scores, scope)[s] for s in seeds]) for scope in ("unlearn", "retention")]
        if any(a.shape[1] == 0 for a in arrays):
            return None
        seed_draw = rng.integers(0, len(seeds), size=(resamples, len(seeds)))
        resampled = [
            a[seed_draw[..., None], rng.integers(0, a.shape[1], size=(resamples, len(seeds), a.shape[1]))]
            for a in arrays
        ]
        observed = float(_avg_success(arrays[0][None], arrays[1][None])[0])
        return observed, _avg_success(*resampled)

    a, b = draws(first), draws(second)
    if a is None or b is None:
        return None
    low, high = numpy.nanpercentile(a[1] - b[1], [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return a[0] - b[0], (float(low), float(high))
