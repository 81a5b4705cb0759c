"""Intervals and tests: the one place an interval, a p-value or a sample size is computed.

Intervals (`IntervalSpec` says which; `analysis.interval` and `analysis.resamples` in the YAML):

- bootstrap (the default): scipy.stats.bootstrap over runs, BCa with `resamples` resamples and
  a fixed seed (the same numbers on every build). Paired differences resample the matched
  pairs (one sample of differences); unpaired ones resample each group on its own (a
  stratified bootstrap). When BCa cannot be computed (its jackknife or bias term is
  degenerate, e.g. heavy ties) the percentile interval is used and the method says so
  ("percentile"). All values equal: a zero-width interval ("constant").
  A bootstrap from few runs is too narrow: it treats the sample as the population. Measured
  here (1000-2000 simulated experiments each, normal and Beta-distributed accuracies, 999-1999
  resamples), plain 95 % BCa covers 72-78 % at 3 runs, 83-87 % at 5, 90-91 % at 10, 92-95 % at 20. So the bootstrap is "expanded"
  (Hesterberg 2015): its confidence level is raised to 1 - 2 Phi(-sqrt(n/(n-1)) t(1-alpha/2,
  n-1)) with n the smaller group, which covers 91-96 % at 5 runs and 93-95 % from 10 on. Below BOOTSTRAP_MIN (5)
  runs in a group no bootstrap covers (75-88 % at 3, expanded) and the Student t interval,
  cut to the metric's range, is used instead: method "t (n<5)".
- t: the Student t interval, mean +- t(1 - alpha/2, n - 1) * s / sqrt(n) (s: sample std, ddof
  1); paired t for matched differences, Welch's interval (Welch-Satterthwaite degrees of
  freedom) for two independent groups.

One value gives no interval (NaN bounds). Every interval is kept inside the range the metric
can take (scoring.metric_range: an accuracy in [0, 1], a difference of accuracies in [-1, 1]);
an interval that had to be cut is marked `clipped`. A bootstrap interval of a mean or a
difference of means never leaves the range; a t interval can.

Also here: the interquartile mean (rliable's IQM, the 25 % trimmed mean; from 4 values), the
probability of improvement P(A > B) (Agarwal et al. 2021: paired, the share of pairs where A
beats B; unpaired, Mann-Whitney U / (n_a n_b); ties count 1/2) with its bootstrap interval,
the p-value of the paired t / Welch t test of a difference, Holm's correction over a family of
p-values (statsmodels), and the seeds a difference would need (normal approximation, two-sided
test at alpha with the given power).

Report effects (analysis.effects), figure bands (report.plots) and claim verdicts
(claims.evaluation) all call these. Over 400 lines because it is the one place (DESIGN.md) every
interval, test, correction and sample size is computed: splitting it would split that promise.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from keras_ablate import scoring

CONFIDENCE = 0.95
RESAMPLES = 2000
BOOTSTRAP_MIN = 5  # runs per group below which the t interval replaces the bootstrap
INTERVALS = ("bootstrap", "t")
ALPHA = 0.05
POWER = 0.8


@dataclass(frozen=True)
class IntervalSpec:
    """Which interval: 'bootstrap' (BCa, percentile fallback) or 't'; resamples and seed of the bootstrap."""

    kind: str = "bootstrap"
    resamples: int = RESAMPLES
    seed: int = 0
    confidence: float = CONFIDENCE

    @classmethod
    def from_info(cls, info: dict | None) -> IntervalSpec:
        """From experiment.json's `analysis` section (defaults where it says nothing)."""
        analysis = (info or {}).get("analysis") or {}
        return cls(
            kind=analysis.get("interval") or "bootstrap",
            resamples=int(analysis.get("resamples") or RESAMPLES),
        )

    def describe(self) -> str:
        """'95 % BCa bootstrap intervals over runs (2000 resamples, ...)' or '95 % Student t intervals'."""
        level = f"{self.confidence * 100:g} %"
        if self.kind == "t":
            return f"{level} Student t intervals over runs (paired t for matched runs, Welch otherwise)"
        return (
            f"{level} bootstrap intervals over runs (BCa at Hesterberg's expanded level, "
            f"{self.resamples} resamples, seed {self.seed}; matched runs resampled in pairs, other "
            f"groups each on its own; percentile where BCa is degenerate; Student t, cut to the "
            f"metric's range, for groups of fewer than {BOOTSTRAP_MIN} runs)"
        )


T = IntervalSpec("t")


@dataclass
class Estimate:
    """A point estimate with its interval; method: BCa, percentile, constant, t, welch or '' (none)."""

    value: float
    low: float = math.nan
    high: float = math.nan
    method: str = ""
    clipped: bool = False


# ---------------------------------------------------------------- Student t


def t_interval(n, mean, std, confidence: float = CONFIDENCE):
    """Vectorized Student t interval bounds (NaN where n < 2)."""
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = stats.t.ppf(0.5 + confidence / 2, np.where(n > 1, n - 1, np.nan))
        half = t * np.asarray(std, dtype=float) / np.sqrt(n)
    return mean - half, mean + half


def mean_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student t interval of a mean; (NaN, NaN) below 2 values, zero width when all are equal."""
    x = np.asarray(values, float)
    if len(x) < 2:
        return (math.nan, math.nan)
    low, high = t_interval(len(x), x.mean(), x.std(ddof=1), confidence)
    return (float(low), float(high))


def paired_interval(differences, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high) of per-pair differences: the t interval of their mean."""
    x = np.asarray(differences, float)
    return (float(np.mean(x)), *mean_interval(x, confidence))


def welch_interval(a, b, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean(a) - mean(b), low, high): Welch's t interval for the difference of two means."""
    xa, xb = np.asarray(a, float), np.asarray(b, float)
    diff = float(xa.mean() - xb.mean())
    if len(xa) < 2 or len(xb) < 2:
        return diff, math.nan, math.nan
    va, vb = xa.var(ddof=1) / len(xa), xb.var(ddof=1) / len(xb)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    dof = (va + vb) ** 2 / (va**2 / (len(xa) - 1) + vb**2 / (len(xb) - 1))
    half = stats.t.ppf(0.5 + confidence / 2, dof) * se
    return diff, diff - half, diff + half


# ---------------------------------------------------------------- bootstrap


def expanded_confidence(n: int, confidence: float = CONFIDENCE) -> float:
    """Hesterberg's (2015) expanded level: 1 - 2 Phi(-sqrt(n/(n-1)) t(1/2 + confidence/2, n-1))."""
    if n < 2:
        return confidence
    z = math.sqrt(n / (n - 1)) * stats.t.ppf(0.5 + confidence / 2, n - 1)
    return float(1 - 2 * stats.norm.sf(z))


def bootstrap_interval(
    samples: tuple, statistic: Callable, spec: IntervalSpec, expand: bool = True
) -> tuple[np.ndarray, np.ndarray, str]:
    """(low, high, method) of scipy.stats.bootstrap along the last axis: BCa, else percentile.

    `statistic(*samples, axis=-1)` must be vectorized. Leading axes are independent data sets
    (one call bootstraps many simulated experiments at once); the fallback to percentile is
    made for the whole call when any BCa bound is not finite. `expand`: at the expanded level
    of the smallest sample (module docstring).
    """
    samples = tuple(np.asarray(s, float) for s in samples)
    n = min(s.shape[-1] for s in samples)
    level = expanded_confidence(n, spec.confidence) if expand else spec.confidence
    methods = ("percentile",) if n < 3 else ("BCa", "percentile")
    for method in methods:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.errstate(all="ignore"):
                result = stats.bootstrap(
                    samples,
                    statistic,
                    n_resamples=spec.resamples,
                    confidence_level=level,
                    method=method,
                    vectorized=True,
                    axis=-1,
                    rng=np.random.default_rng(spec.seed),
                )
        low = np.asarray(result.confidence_interval.low, float)
        high = np.asarray(result.confidence_interval.high, float)
        if np.all(np.isfinite(low) & np.isfinite(high)):
            return low, high, method
    return low, high, method


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def _mean_difference(a, b, axis=-1):
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def clip(low: float, high: float, bounds: tuple[float, float] | None) -> tuple[float, float, bool]:
    """(low, high, clipped): the interval cut to the metric's range."""
    if bounds is None or not (math.isfinite(low) and math.isfinite(high)):
        return low, high, False
    new_low, new_high = float(max(low, bounds[0])), float(min(high, bounds[1]))
    return new_low, new_high, (new_low, new_high) != (low, high)


def difference_range(bounds: tuple[float, float] | None) -> tuple[float, float] | None:
    """The range of a difference of two values in `bounds`: [low - high, high - low]."""
    return None if bounds is None else (bounds[0] - bounds[1], bounds[1] - bounds[0])


def mean_estimate(
    values, spec: IntervalSpec = T, bounds: tuple[float, float] | None = None
) -> Estimate:
    """The mean of `values` with its interval (spec), kept inside `bounds`."""
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    if not len(x):
        return Estimate(math.nan)
    mean = float(x.mean())
    if len(x) < 2:
        return Estimate(mean)
    if np.all(x == x[0]):
        return Estimate(mean, mean, mean, "constant")
    if spec.kind == "t" or len(x) < BOOTSTRAP_MIN:
        low, high = mean_interval(x, spec.confidence)
        method = "t" if spec.kind == "t" else f"t (n<{BOOTSTRAP_MIN})"
    else:
        low, high, method = bootstrap_interval((x,), _mean, spec)
    low, high, clipped = clip(float(low), float(high), bounds)
    return Estimate(mean, low, high, method, clipped)


def difference_estimate(
    a, b, paired: bool, spec: IntervalSpec = T, bounds: tuple[float, float] | None = None
) -> Estimate:
    """mean(a) - mean(b) with its interval; `paired`: a[i] and b[i] are matched runs. `bounds`
    is the range of the metric (the difference is kept in difference_range(bounds))."""
    xa, xb = np.asarray(a, float), np.asarray(b, float)
    span = difference_range(bounds)
    if paired:
        d = xa - xb
        est = mean_estimate(d, spec, span)
        return Estimate(
            est.value,
            est.low,
            est.high,
            est.method.replace("t", "paired t", 1) if est.method.startswith("t") else est.method,
            est.clipped,
        )
    diff = float(xa.mean() - xb.mean())
    if len(xa) < 2 or len(xb) < 2:
        return Estimate(diff)
    if np.all(xa == xa[0]) and np.all(xb == xb[0]):
        return Estimate(diff, diff, diff, "constant")
    if spec.kind == "t" or min(len(xa), len(xb)) < BOOTSTRAP_MIN:
        _, low, high = welch_interval(xa, xb, spec.confidence)
        method = "welch" if spec.kind == "t" else f"welch (n<{BOOTSTRAP_MIN})"
    else:
        low, high, method = bootstrap_interval((xa, xb), _mean_difference, spec)
    low, high, clipped = clip(float(low), float(high), span)
    return Estimate(diff, low, high, method, clipped)


# ---------------------------------------------------------------- aggregates and P(A > B)


def iqm(values) -> float:
    """Interquartile mean (25 % trimmed mean, rliable's IQM) of the finite values; NaN below 4."""
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    return float(stats.trim_mean(x, 0.25)) if len(x) >= 4 else math.nan


def _wins_paired(d, axis=-1):
    return np.mean((d > 0) + 0.5 * (d == 0), axis=axis)


def _wins_unpaired(a, b, axis=-1):
    a, b = np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)
    left, right = a[..., :, None], b[..., None, :]
    return np.mean((left > right) + 0.5 * (left == right), axis=(-2, -1))


def probability_of_improvement(
    a, b, paired: bool, spec: IntervalSpec = IntervalSpec(), higher_is_better: bool = True
) -> Estimate:
    """P(A better than B) over runs, with a bootstrap interval (whatever spec.kind: there is no
    t interval for it). Paired: the share of matched pairs where A is better; unpaired:
    Mann-Whitney U / (n_a n_b). Ties count 1/2; lower-is-better metrics compare negated values."""
    xa, xb = np.asarray(a, float), np.asarray(b, float)
    if not higher_is_better:
        xa, xb = -xa, -xb
    if not len(xa) or not len(xb):
        return Estimate(math.nan)
    boot = IntervalSpec("bootstrap", spec.resamples, spec.seed, spec.confidence)
    if paired:
        d = xa - xb
        value = float(_wins_paired(d))
        samples, statistic = (d,), _wins_paired
    else:
        value = float(_wins_unpaired(xa, xb))
        samples, statistic = (xa, xb), _wins_unpaired
    if min(len(s) for s in samples) < 2:
        return Estimate(value)
    if all(np.all(s == s[0]) for s in samples):
        return Estimate(value, value, value, "constant")
    low, high, method = bootstrap_interval(samples, statistic, boot)
    return Estimate(value, float(low), float(high), method)


# ---------------------------------------------------------------- tests, multiplicity, seeds


def difference_p_value(a, b, paired: bool) -> float:
    """Two-sided p-value of mean(a) = mean(b): paired t test of the differences, else Welch's t
    test. A constant nonzero difference gives 0, a constant zero one 1; NaN below 2 values.
    Nearly equal values (scipy's "precision loss" warning) give scipy's p-value, unwarned."""
    xa, xb = np.asarray(a, float), np.asarray(b, float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if paired:
            d = xa - xb
            if len(d) < 2:
                return math.nan
            if np.all(d == d[0]):
                return 0.0 if d[0] != 0 else 1.0
            return float(stats.ttest_1samp(d, 0.0).pvalue)
        if len(xa) < 2 or len(xb) < 2:
            return math.nan
        if xa.var() == 0 and xb.var() == 0:
            return 0.0 if xa[0] != xb[0] else 1.0
        return float(stats.ttest_ind(xa, xb, equal_var=False).pvalue)


def holm(p_values, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """(reject, adjusted p) after Holm's step-down correction over the finite p-values (the
    family); NaN p-values are left out of the family, never rejected, adjusted to NaN. The
    adjusted p of the i-th smallest of m is max over j <= i of min(1, (m - j + 1) p_(j)); a
    p-value is rejected where its adjusted one is <= alpha (statsmodels' multipletests 'holm'
    gives the same numbers, test_stats checks it, but takes ~0.1 s a call: the adaptive loop and
    its simulations call this thousands of times)."""
    p = np.asarray(p_values, float)
    reject = np.zeros(len(p), dtype=bool)
    adjusted = np.full(len(p), np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    if len(finite):
        m = len(finite)
        order = finite[np.argsort(p[finite], kind="mergesort")]
        steps = np.minimum(1.0, (m - np.arange(m)) * p[order])
        adjusted[order] = np.maximum.accumulate(steps)
        reject[order] = adjusted[order] <= alpha
    return reject, adjusted


def seeds_needed(
    effect: float, sd: float, paired: bool, alpha: float = ALPHA, power: float = POWER
):
    """Runs per arm (pairs, when paired) for a two-sided test at `alpha` to detect `effect` with
    `power` (normal approximation): paired n = ((z_{1-alpha/2} + z_power) sd_d / effect)^2 with
    sd_d the sd of the differences; unpaired n = 2 ((z_{1-alpha/2} + z_power) sd / effect)^2
    per arm with sd the pooled sd. Rounded up, at least 2; NaN when effect is 0 or sd unknown."""
    if not (math.isfinite(effect) and math.isfinite(sd)) or effect == 0:
        return math.nan
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    n = (z * sd / abs(effect)) ** 2 * (1 if paired else 2)
    return max(2, math.ceil(n - 1e-9))


def looks(min_seeds: int, max_seeds: int, step: int = 1) -> int:
    """How many times an adaptive run can look at its comparisons: at min_seeds, then after every
    round of `step` more seeds, up to max_seeds: 1 + ceil((max - min) / step)."""
    return 1 + math.ceil(max(max_seeds - min_seeds, 0) / max(step, 1))


def alpha_per_look(alpha: float, n_looks: int) -> float:
    """The level each look's Holm correction runs at: alpha / n_looks (Bonferroni over the looks).

    A comparison is declared resolved at the first look whose Holm correction rejects it. A false
    "resolved" anywhere is the union of one per look; each look's Holm keeps its own chance below
    alpha / n_looks whatever the looks share, so the union stays below alpha however the stopping
    depends on earlier looks (a conservative Pocock-like boundary: every look at the same level)."""
    return alpha / max(int(n_looks), 1)


@dataclass
class Ranking:
    """Friedman test over blocks and Nemenyi's critical difference of mean ranks (Demsar 2006)."""

    mean_ranks: np.ndarray  # rank 1 = best, ties share the average rank
    statistic: float  # Friedman chi-square
    p_value: float
    critical_difference: float  # two mean ranks further apart than this differ (alpha)
    blocks: int


def friedman_nemenyi(values, higher_is_better: bool = True, alpha: float = ALPHA) -> Ranking | None:
    """Rank k treatments within each of N blocks (rows of `values`, N x k, finite) and test them:
    Friedman's chi-square (scipy.stats.friedmanchisquare, tie-corrected) and Nemenyi's critical
    difference CD = q_alpha sqrt(k (k + 1) / (6 N)), q_alpha the studentized range quantile for k
    groups and infinite degrees of freedom over sqrt(2) (Demsar's table: 2.343 for k = 3, 2.569
    for 4). None below 3 treatments or 2 blocks."""
    x = np.asarray(values, float)
    if x.ndim != 2 or x.shape[1] < 3 or x.shape[0] < 2 or not np.all(np.isfinite(x)):
        return None
    n, k = x.shape
    ranks = stats.rankdata(-x if higher_is_better else x, axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.friedmanchisquare(*x.T)
    q = stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    cd = float(q * math.sqrt(k * (k + 1) / (6 * n)))
    return Ranking(ranks.mean(axis=0), float(result.statistic), float(result.pvalue), cd, n)


def performance_profile(values, thresholds, higher_is_better: bool = True) -> np.ndarray:
    """The share of `values` at or beyond each threshold (score >= tau; <= tau when lower is
    better): rliable's performance profile over runs (Agarwal et al. 2021), without its bands."""
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    t = np.asarray(thresholds, float)
    if not len(x):
        return np.full(len(t), np.nan)
    hit = x[None, :] >= t[:, None] if higher_is_better else x[None, :] <= t[:, None]
    return hit.mean(axis=1)


# ---------------------------------------------------------------- per group


def mean_bands(
    groups: list, spec: IntervalSpec, bounds: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(low, high, method) of the mean of each group, as mean_estimate gives them, computed fast
    for figure bands: the bootstrap groups of one size are resampled in one vectorized call (BCa,
    or percentile for that whole size when a BCa bound is not finite), every bound is kept in
    `bounds`. Finite values only; fewer than 2 give NaN bounds."""
    low, high = np.full(len(groups), np.nan), np.full(len(groups), np.nan)
    methods = [""] * len(groups)
    by_size: dict[int, list[int]] = {}
    clean = [np.asarray(g, float)[np.isfinite(np.asarray(g, float))] for g in groups]
    for i, x in enumerate(clean):
        if len(x) < 2:
            continue
        if np.all(x == x[0]):
            low[i], high[i], methods[i] = x[0], x[0], "constant"
        elif spec.kind == "t" or len(x) < BOOTSTRAP_MIN:
            low[i], high[i] = mean_interval(x, spec.confidence)
            methods[i] = "t" if spec.kind == "t" else f"t (n<{BOOTSTRAP_MIN})"
        else:
            by_size.setdefault(len(x), []).append(i)
    for index in by_size.values():
        stacked = np.stack([clean[i] for i in index])
        lows, highs, method = bootstrap_interval((stacked,), _mean, spec)
        low[index], high[index] = lows, highs
        for i in index:
            methods[i] = method
    if bounds is not None:
        low, high = np.maximum(low, bounds[0]), np.minimum(high, bounds[1])
    return low, high, methods


def group_intervals(
    frame: pd.DataFrame,
    by: list[str],
    values: list[str],
    confidence: float = CONFIDENCE,
    spec: IntervalSpec | None = None,
    bounds: dict | None = None,
) -> pd.DataFrame:
    """Long table: by..., metric, n, mean, std, ci_low, ci_high, iqm (NaN values are left out of n).

    Without `spec`, Student t intervals at `confidence` (the figures' bands). With a spec, its
    interval, kept inside each metric's range (`bounds[metric]`, else scoring.metric_range),
    with `interval` (the method) and `clipped` columns.
    """
    parts = []
    for value in values:
        column = frame[value].astype(float)
        grouped = (
            column.groupby([frame[b] for b in by], observed=True)
            if by
            else column.groupby(lambda _: 0)
        )
        agg = grouped.agg(["count", "mean", "std"]).rename(columns={"count": "n"})
        agg["n"] = agg["n"].astype(int)
        agg["iqm"] = grouped.agg(iqm)
        if spec is None:
            agg["ci_low"], agg["ci_high"] = t_interval(
                agg["n"], agg["mean"], agg["std"], confidence
            )
        else:
            span = (bounds or {}).get(value, scoring.metric_range(value))
            estimates = [mean_estimate(x.to_numpy(float), spec, span) for _, x in grouped]
            agg["ci_low"] = [e.low for e in estimates]
            agg["ci_high"] = [e.high for e in estimates]
            agg["interval"] = [e.method for e in estimates]
            agg["clipped"] = [e.clipped for e in estimates]
        agg.insert(0, "metric", value)
        parts.append(agg.reset_index(drop=not by))
    out = pd.concat(parts, ignore_index=True)
    extra = ["interval", "clipped"] if spec is not None else []
    return out[[*by, "metric", "n", "mean", "std", "ci_low", "ci_high", "iqm", *extra]]
