"""Claim verdicts: a rule (claims.rules) evaluated on the per-run table, one function per rule kind.

A rule comes out `supported`, `contradicted` or `inconclusive`. Intervals are 95 % t intervals
from analysis.stats: Welch's t (unequal variances, Welch-Satterthwaite degrees of freedom) for
the difference of two group means, Student's t for one group mean, and with `paired: true` Student's t for the mean of
the per-seed differences (same seed: same data and, within an architecture, the same weights).
Runs are counted as follows:

- failed runs (and planned runs not yet finished) never enter a mean, but they are counted and a
  group left with fewer than `min_seeds` finished runs makes the rule inconclusive;
- diverged runs are results. Nothing measured on a run's diverged weights is kept (see
  keras_ablate.scoring: its final values, and those of the epoch it diverged in, are NaN), so a
  finite metric of a diverged run was measured before it diverged (at initialization, its best
  epoch before, ...) and is used as is; a missing or non-finite one is replaced by the worst
  finite value of that metric among the experiment's finished runs (`diverged: worst`, the
  default; "worst" is the smallest value where higher is better and the largest elsewhere, by
  `better:` or else by the metric's name, as scoring.higher_is_better reads it), by a given
  number, or left out and counted (`diverged: exclude`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from keras_ablate.analysis.stats import mean_interval, paired_interval, welch_interval
from keras_ablate.claims.rules import VERDICTS, LeafRule, Rule, level_text
from keras_ablate.scoring import higher_is_better
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


@dataclass
class Verdict:
    """A rule's outcome, the reason in words, the numbers and the sub-verdicts of all/any."""

    verdict: str
    reason: str
    kind: str
    name: str = ""
    metric: str | None = None
    estimate: float | None = None
    ci: tuple[float, float] | None = None
    groups: list[Group] = field(default_factory=list)
    children: list[Verdict] = field(default_factory=list)
    rule: dict = field(default_factory=dict)

    def leaves(self) -> list[Verdict]:
        return [leaf for c in self.children for leaf in c.leaves()] if self.children else [self]


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


def group_values(runs: pd.DataFrame, where: dict, leaf: LeafRule, label: str) -> Group:
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
    diverged = (finished["status"] == "diverged").to_numpy() if len(finished) else np.zeros(0, bool)
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
        group.mean = float(np.mean(values))
        group.ci = mean_interval(values, leaf.confidence)
    return group


# ---------------------------------------------------------------------------------------------
# Evaluation: one function per rule kind.


def evaluate(rule: Rule, runs: pd.DataFrame) -> Verdict:
    """Evaluate a rule on the per-run table (columns: settings, status, metrics)."""
    kind = rule.kind
    if kind in ("all", "any"):
        return evaluate_all_any(kind, rule.body, runs)
    leaf = rule.body
    base = {"kind": kind, "name": leaf.name, "metric": leaf.metric, "rule": leaf.model_dump()}
    if leaf.metric not in runs.columns:
        return Verdict("inconclusive", f"inconclusive: metric {leaf.metric} not recorded", **base)
    return _LEAF_KINDS[kind](leaf, runs, base)


def evaluate_all_any(kind: str, rules: list[Rule], runs: pd.DataFrame) -> Verdict:
    """all: contradicted if one rule is, supported if all are; any: the other way round.
    Evidence-only rules (counts: false) are shown but do not vote."""
    children = [evaluate(child, runs) for child in rules]
    verdicts = [c.verdict for c in children if c.rule.get("counts", True)]
    if not verdicts:
        return Verdict("inconclusive", f"{kind}: no rule that counts", kind, children=children)
    if kind == "all":
        verdict = (
            "contradicted"
            if "contradicted" in verdicts
            else ("supported" if all(v == "supported" for v in verdicts) else "inconclusive")
        )
    else:
        verdict = (
            "supported"
            if "supported" in verdicts
            else ("contradicted" if all(v == "contradicted" for v in verdicts) else "inconclusive")
        )
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in VERDICTS if v in verdicts)
    return Verdict(verdict, f"{kind} of {len(verdicts)} rules: {counts}", kind, children=children)


def evaluate_threshold(leaf, runs: pd.DataFrame, base: dict) -> Verdict:
    """The mean of the selected group is above (or below) `value`: its interval decides."""
    group = group_values(runs, leaf.where, leaf, _label(leaf.where))
    problem = _too_few(group, leaf)
    if problem:
        return Verdict("inconclusive", problem, groups=[group], **base)
    lo, hi = group.ci
    claimed = f"mean {'<' if leaf.direction == 'less' else '>'} {leaf.value:g}"
    verdict = _side(lo, hi, leaf.value, leaf.direction == "greater")
    reason = f"{claimed}: mean {group.mean:.4g}, {leaf.confidence:.0%} CI [{lo:.4g}, {hi:.4g}], n={len(group.values)}"
    return Verdict(verdict, reason, estimate=group.mean, ci=group.ci, groups=[group], **base)


def evaluate_compare(leaf, runs: pd.DataFrame, base: dict) -> Verdict:
    """mean(A) - mean(B) is above (or below) `margin`: the interval of the difference decides."""
    groups, difference = _difference(leaf, runs, base)
    if isinstance(difference, Verdict):
        return difference
    diff, lo, hi, interval = difference
    verdict = _side(lo, hi, leaf.margin, leaf.direction == "greater")
    claimed = f"A {'>' if leaf.direction == 'greater' else '<'} B" + (
        f" by {leaf.margin:g}" if leaf.margin else ""
    )
    return Verdict(
        verdict, f"{claimed}: {interval}", estimate=diff, ci=(lo, hi), groups=groups, **base
    )


def evaluate_equivalent(leaf, runs: pd.DataFrame, base: dict) -> Verdict:
    """|mean(A) - mean(B)| < `margin`: the whole interval of the difference inside (-m, m)."""
    groups, difference = _difference(leaf, runs, base)
    if isinstance(difference, Verdict):
        return difference
    diff, lo, hi, interval = difference
    m = leaf.margin
    verdict = (
        "supported"
        if -m < lo and hi < m
        else ("contradicted" if lo > m or hi < -m else "inconclusive")
    )
    return Verdict(
        verdict, f"|A-B| < {m:g}: {interval}", estimate=diff, ci=(lo, hi), groups=groups, **base
    )


def _difference(leaf, runs: pd.DataFrame, base: dict):
    """Groups A and B, and (mean(A) - mean(B), low, high, the interval in words); or a Verdict
    (inconclusive) in place of the difference when a group has too few values or pairs."""
    ga = group_values(runs, leaf.a, leaf, _label(leaf.a))
    gb = group_values(runs, leaf.b, leaf, _label(leaf.b))
    for g in (ga, gb):
        problem = _too_few(g, leaf)
        if problem:
            return [ga, gb], Verdict("inconclusive", problem, groups=[ga, gb], **base)
    if leaf.paired:
        common = dict(zip(gb.seeds, gb.values, strict=False))
        differences = [
            x - common[s] for s, x in zip(ga.seeds, ga.values, strict=False) if s in common
        ]
        if len(differences) < leaf.min_seeds:
            return [ga, gb], Verdict(
                "inconclusive",
                f"inconclusive: {len(differences)} seed pair(s), needs {leaf.min_seeds}",
                groups=[ga, gb],
                **base,
            )
        diff, lo, hi = paired_interval(differences, leaf.confidence)
        interval = f"A-B = {diff:.4g}, {leaf.confidence:.0%} paired t CI [{lo:.4g}, {hi:.4g}] ({len(differences)} seed pairs)"
    else:
        diff, lo, hi = welch_interval(ga.values, gb.values, leaf.confidence)
        interval = f"A-B = {diff:.4g}, {leaf.confidence:.0%} Welch CI [{lo:.4g}, {hi:.4g}] (n={len(ga.values)}, {len(gb.values)})"
    return [ga, gb], (diff, lo, hi, interval)


# Each leaf kind's evaluation (all and any nest them: evaluate_all_any).
_LEAF_KINDS = {
    "threshold": evaluate_threshold,
    "compare": evaluate_compare,
    "equivalent": evaluate_equivalent,
}


def _side(lo: float, hi: float, value: float, greater: bool) -> str:
    if greater:
        return "supported" if lo > value else ("contradicted" if hi < value else "inconclusive")
    return "supported" if hi < value else ("contradicted" if lo > value else "inconclusive")


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
