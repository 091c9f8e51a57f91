"""Statistics over seeds and val pairs: confidence intervals and paired comparisons.

* **Intervals over seeds.** A metric's seeds are few (3-5), so its 95% interval is
  Student's t over the per-seed values: mean ± t(0.975, n-1) · s/√n. Perplexity is
  averaged geometrically (its t-interval is taken on log perplexity and exponentiated),
  since one diverged seed would otherwise dominate an arithmetic mean.
* **Comparisons.** Two methods' Avg Success is compared over their shared seeds: the
  per-seed differences (same seeds, same val pairs) give a mean and a Student-t interval
  with n - 1 degrees of freedom, whose variance adds the variance of the seed-averaged
  difference when the val pairs are bootstrapped (the same pairs for both methods and
  every seed). Seeds vary training, pairs vary the questions; with 3-5 seeds a percentile
  bootstrap over seeds would be too narrow (it cannot reach past the extreme seeds), so
  the seed level uses t. Two runs (``compare``) are unpaired: each run's variance of its
  mean is added, with the smaller run's n - 1 degrees of freedom.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy

RESAMPLES = 2000
LEVEL = 0.95
INTERVAL_NOTE = (
    "mean ± half-width of a 95% Student-t interval over seeds; perplexity: geometric mean over seeds ×/÷ the "
    "factor of its 95% interval (the t-interval of the logs)"
)
BOOTSTRAP_NOTE = (
    "paired test over seeds and val pairs: 95% Student-t interval (n-1 df) of the per-seed differences, "
    f"its variance widened by a {RESAMPLES}-resample val-pair bootstrap"
)


def quantile(df: float) -> float:
    """The upper quantile of a two-sided 95% interval: Student-t with ``df`` degrees of
    freedom (df >= 1), else the normal's. scipy.special's ``stdtrit``/``ndtri`` are what
    ``scipy.stats.t.ppf``/``norm.ppf`` compute, imported on first use so that reading
    records does not pay for scipy.stats (about a second)."""
    from scipy.special import ndtri, stdtrit

    return float(stdtrit(df, 0.5 + LEVEL / 2)) if df >= 1 else float(ndtri(0.5 + LEVEL / 2))


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
    half = quantile(len(finite) - 1) * sd / math.sqrt(len(finite))
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
    """Avg Success per seed from (..., seeds, pairs) accuracies."""
    return ((100.0 - numpy.nanmean(unlearn, axis=-1)) + numpy.nanmean(retention, axis=-1)) / 2


def _arrays(scores: PairScores, seeds: list[int]) -> tuple[numpy.ndarray, numpy.ndarray] | None:
    unlearn = numpy.stack([scores.unlearn[s] for s in seeds])
    retention = numpy.stack([scores.retention[s] for s in seeds])
    return None if unlearn.shape[1] == 0 or retention.shape[1] == 0 else (unlearn, retention)


def _pair_variance(
    per_seed: Callable[[numpy.ndarray, numpy.ndarray], numpy.ndarray],
    n_unlearn: int,
    n_retention: int,
    rng: numpy.random.Generator,
    resamples: int,
) -> float:
    """Variance of the seed-averaged statistic when the val pairs are resampled (the
    same pairs for every seed and both methods: the questions are one sample)."""
    unlearn_draw = rng.integers(0, n_unlearn, size=(resamples, n_unlearn))
    retention_draw = rng.integers(0, n_retention, size=(resamples, n_retention))
    return float(numpy.nanvar(per_seed(unlearn_draw, retention_draw).mean(axis=-1), ddof=1))


def _interval(center: float, seed_values: numpy.ndarray, pair_variance: float, df: int) -> tuple[float, float]:
    """center ± q·sqrt(seed variance of the mean + pair variance); q is t(df) with two or
    more seeds, else the normal quantile (pairs only)."""
    seed_variance = float(numpy.var(seed_values, ddof=1)) / len(seed_values) if len(seed_values) > 1 else 0.0
    half = quantile(df) * math.sqrt(seed_variance + pair_variance)
    return center - half, center + half


def paired_difference(
    first: PairScores, second: PairScores, *, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, tuple[float, float]] | None:
    """``first`` minus ``second`` in Avg Success over their shared seeds, with a 95%
    interval: Student-t over the per-seed differences (n - 1 degrees of freedom), its
    variance widened by the val-pair bootstrap variance. None when they share no seed or
    their val pairs differ."""
    seeds = sorted(first.seeds() & second.seeds())
    if not seeds:
        return None
    a, b = _arrays(first, seeds), _arrays(second, seeds)
    if a is None or b is None or a[0].shape != b[0].shape or a[1].shape != b[1].shape:
        return None
    differences = _avg_success(*a) - _avg_success(*b)

    def per_seed(unlearn_draw: numpy.ndarray, retention_draw: numpy.ndarray) -> numpy.ndarray:
        take = lambda x, draw: x[:, draw].transpose(1, 0, 2)  # noqa: E731  (resamples, seeds, pairs)
        return _avg_success(take(a[0], unlearn_draw), take(a[1], retention_draw)) - _avg_success(
            take(b[0], unlearn_draw), take(b[1], retention_draw)
        )

    rng = numpy.random.default_rng(seed)
    variance = _pair_variance(per_seed, a[0].shape[1], a[1].shape[1], rng, resamples)
    observed = float(differences.mean())
    return observed, _interval(observed, differences, variance, len(seeds) - 1)


def unpaired_difference(
    first: PairScores, second: PairScores, *, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, tuple[float, float]] | None:
    """``first`` minus ``second`` in Avg Success across two runs (their seeds are separate
    trainings): each run's seed variance of its mean plus its val-pair bootstrap variance,
    Student-t with the smaller run's n - 1 degrees of freedom."""
    rng = numpy.random.default_rng(seed)
    parts = []
    for scores in (first, second):
        seeds = sorted(scores.seeds())
        arrays = _arrays(scores, seeds) if seeds else None
        if arrays is None:
            return None
        values = _avg_success(*arrays)

        def per_seed(unlearn_draw: numpy.ndarray, retention_draw: numpy.ndarray, x=arrays) -> numpy.ndarray:
            return _avg_success(x[0][:, unlearn_draw].transpose(1, 0, 2), x[1][:, retention_draw].transpose(1, 0, 2))

        pair_variance = _pair_variance(per_seed, arrays[0].shape[1], arrays[1].shape[1], rng, resamples)
        seed_variance = float(numpy.var(values, ddof=1)) / len(values) if len(values) > 1 else 0.0
        parts.append((float(values.mean()), seed_variance + pair_variance, len(values)))
    (mean_a, var_a, n_a), (mean_b, var_b, n_b) = parts
    df = min(n_a, n_b) - 1
    half = quantile(df) * math.sqrt(var_a + var_b)
    difference = mean_a - mean_b
    return difference, (difference - half, difference + half)
