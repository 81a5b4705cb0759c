"""Confidence intervals: the one place an interval is computed (Student t, paired t, Welch t).

- `t_interval(n, mean, std)`: mean +- t(1 - alpha/2, n - 1) * std / sqrt(n), vectorized; std is
  the sample std (ddof 1); NaN bounds where n < 2, zero width where std is 0.
- `mean_interval(values)`: that interval for one sample's mean.
- `paired_interval(differences)`: the mean of per-pair differences and its t interval (pairs
  share every other setting and the seed).
- `welch_interval(a, b)`: mean(a) - mean(b) with Welch's interval (unequal variances,
  Welch-Satterthwaite degrees of freedom); NaN bounds when a side has fewer than 2 values,
  zero width when both sides are constant.
- `group_intervals(frame, by, values)`: per group of `by`, n, mean, std and the t interval.

Report effects (analysis.effects), figure bands (report.plots) and claim verdicts
(claims.evaluation) all call these.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95


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


def group_intervals(
    frame: pd.DataFrame, by: list[str], values: list[str], confidence: float = CONFIDENCE
) -> pd.DataFrame:
    """Long table: by..., metric, n, mean, std, ci_low, ci_high (NaN values are left out of n)."""
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
        agg["ci_low"], agg["ci_high"] = t_interval(agg["n"], agg["mean"], agg["std"], confidence)
        agg.insert(0, "metric", value)
        parts.append(agg.reset_index(drop=not by))
    out = pd.concat(parts, ignore_index=True)
    return out[[*by, "metric", "n", "mean", "std", "ci_low", "ci_high"]]
