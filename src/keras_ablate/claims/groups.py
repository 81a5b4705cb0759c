"""Claim groups: the runs a rule's selector picks and their values under the failed / diverged
policy (claims.evaluation's docstring), with each group's mean and interval (analysis.stats)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from keras_ablate.analysis import stats
from keras_ablate.analysis.stats import IntervalSpec
from keras_ablate.claims.rules import LeafRule, level_text
from keras_ablate.scoring import higher_is_better, metric_range
from keras_ablate.store import DONE_STATUSES


@dataclass
class Group:
    """One selected group of runs and its summary statistics."""

    label: str
    values: list[float]
    seeds: list = field(default_factory=list)
    n_planned: int = 0
    n_finished: int = 0
    n_diverged: int = 0
    n_failed: int = 0
    n_missing: int = 0
    n_excluded: int = 0
    mean: float = math.nan
    ci: tuple[float, float] = (math.nan, math.nan)
    interval: str = ""


# ---------------------------------------------------------------------------------------------
# Selection and values.


def select(runs: pd.DataFrame, where: dict[str, Any]) -> pd.DataFrame:
    """Rows whose columns equal every level in `where` (compared as text, so 1 == 1.0 == '1')."""
    mask = pd.Series(True, index=runs.index)
    for key, level in where.items():
        if key not in runs.columns:
            return runs.iloc[0:0]
        mask &= runs[key].map(level_text) == level_text(level)
    return runs[mask]


def better_of(leaf: LeafRule) -> str:
    """The leaf's `better:`, else the direction of its metric's name (keras_ablate.scoring)."""
    if leaf.better:
        return leaf.better
    return "higher" if higher_is_better(leaf.metric) else "lower"


def _transform(values: np.ndarray, how: str) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        if how == "log10":
            return np.where(values > 0, np.log10(np.where(values > 0, values, 1.0)), np.nan)
        if how == "abs_log10":
            return np.where(values > 0, np.abs(np.log10(np.where(values > 0, values, 1.0))), np.nan)
        if how == "negate":
            return -values
    return values


def group_values(
    runs: pd.DataFrame, where: dict, leaf: LeafRule, label: str, spec: IntervalSpec | None = None
) -> Group:
    """Collect one group's metric values under the failed/diverged policy (see module docstring)."""
    rows = select(runs, where)
    group = Group(label=label, values=[], n_planned=len(rows))
    status = rows["status"] if "status" in rows.columns else pd.Series("ok", index=rows.index)
    group.n_failed = int((status == "failed").sum())
    group.n_missing = int((status == "missing").sum())
    finished = rows[status.isin(DONE_STATUSES)]
    group.n_finished = len(finished)
    group.n_diverged = int((finished["status"] == "diverged").sum()) if "status" in finished else 0
    if leaf.metric not in runs.columns:
        return group
    # The stand-in for a diverged run: the worst finite value among the experiment's finished runs.
    every_finished = runs[runs["status"].isin(DONE_STATUSES)] if "status" in runs.columns else runs
    all_values = _transform(
        pd.to_numeric(every_finished[leaf.metric], errors="coerce").to_numpy(float), leaf.transform
    )
    finite_all = all_values[np.isfinite(all_values)]
    mine = _transform(
        pd.to_numeric(finished[leaf.metric], errors="coerce").to_numpy(float), leaf.transform
    )
    diverged = (status[finished.index] == "diverged").to_numpy()
    values, seeds = [], []
    seed_column = (
        finished["seed"].tolist() if "seed" in finished.columns else list(range(len(finished)))
    )
    for value, is_diverged, seed in zip(mine, diverged, seed_column, strict=False):
        if math.isfinite(value):
            replaced = float(value)
        elif is_diverged and leaf.diverged != "exclude":
            if isinstance(leaf.diverged, float | int) and not isinstance(leaf.diverged, bool):
                replaced = float(leaf.diverged)
            elif len(finite_all):
                worst_high = (better_of(leaf) == "lower") != (leaf.transform == "negate")
                replaced = float(finite_all.max() if worst_high else finite_all.min())
            else:
                group.n_excluded += 1
                continue
        else:
            group.n_excluded += 1
            continue
        values.append(replaced)
        seeds.append(seed)
    group.values, group.seeds = values, seeds
    if values:
        estimate = stats.mean_estimate(values, _spec(spec, leaf), _bounds(leaf))
        group.mean = float(np.mean(values))
        group.ci = (estimate.low, estimate.high)
        group.interval = estimate.method
    return group


def _spec(spec: IntervalSpec | None, leaf: LeafRule) -> IntervalSpec:
    """The claim's interval at the leaf's confidence."""
    spec = spec or IntervalSpec()
    return IntervalSpec(spec.kind, spec.resamples, spec.seed, leaf.confidence)


def _bounds(leaf: LeafRule) -> tuple[float, float] | None:
    """The range the leaf's values can take: the metric's, unless a transform changed them."""
    return metric_range(leaf.metric) if leaf.transform == "none" else None


def _too_few(group: Group, leaf: LeafRule) -> str | None:
    n = len(group.values)
    if n >= leaf.min_seeds:
        return None
    parts = [f"{group.n_finished} finished"]
    for what, k in (
        ("failed", group.n_failed),
        ("not run yet", group.n_missing),
        ("diverged", group.n_diverged),
        ("without a finite value", group.n_excluded),
    ):
        if k:
            parts.append(f"{k} {what}")
    return (
        f"inconclusive: group {group.label} has {n} usable value(s) of {leaf.metric} "
        f"({', '.join(parts)} of {group.n_planned} planned); needs {leaf.min_seeds}"
    )


def _label(where: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in where.items()) or "all runs"
