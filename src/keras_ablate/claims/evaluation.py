"""Claim verdicts: a rule (claims.rules) evaluated on the per-run table, one function per rule kind.

A rule comes out `supported`, `contradicted` or `inconclusive`. Every number comes from
analysis.stats, the module the report's effects use:

- intervals: the claim file's `analysis.interval` (bootstrap by default: BCa at the expanded
  level over runs, Student t / Welch, cut to the metric's range, for groups of fewer than 5 runs;
  `t`: Student t, Welch for two independent groups), at the leaf's `confidence`. `paired: true`
  pairs runs by seed (same seed: same data and, within an architecture, the same weights) and
  resamples the per-seed differences;
- a test per compare / threshold leaf: the paired t or Welch t test of the difference against
  `margin` (the one-sample t test of the mean against `value`), Holm-corrected across the claim's
  counted compare and threshold leaves (the family), at alpha = 1 - confidence. A leaf is
  supported when its Holm-corrected test rejects AND its interval lies on the claimed side of
  the margin, contradicted when both say the other side, and inconclusive otherwise; the
  uncorrected interval is shown. Equivalence leaves (two one-sided intervals: the whole
  interval inside (-margin, margin)) are an intersection-union test and need no correction;
- P(A better than B) with its bootstrap interval on every compare leaf.

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

from keras_ablate.analysis import stats
from keras_ablate.analysis.stats import IntervalSpec
from keras_ablate.claims.rules import VERDICTS, LeafRule, Rule, level_text
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
    # compare / threshold leaves: the uncorrected p-value, the Holm-adjusted one, P(A better).
    p_value: float = math.nan
    p_holm: float = math.nan
    p_better: stats.Estimate | None = None
    # The side the interval alone points to, before the correction decides.
    side: str = ""

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


# ---------------------------------------------------------------------------------------------
# Evaluation: one function per rule kind.


def evaluate(rule: Rule, runs: pd.DataFrame, spec: IntervalSpec | None = None) -> Verdict:
    """Evaluate a rule on the per-run table (columns: settings, status, metrics): every leaf's
    interval and test, Holm's correction across the counted tests, then all / any."""
    verdict = _evaluate_tree(rule, runs, spec)
    _correct(verdict)
    return _combine(verdict)


def _evaluate_tree(rule: Rule, runs: pd.DataFrame, spec: IntervalSpec | None) -> Verdict:
    kind = rule.kind
    if kind in ("all", "any"):
        children = [_evaluate_tree(child, runs, spec) for child in rule.body]
        return Verdict("inconclusive", "", kind, children=children)
    leaf = rule.body
    base = {"kind": kind, "name": leaf.name, "metric": leaf.metric, "rule": leaf.model_dump()}
    if leaf.metric not in runs.columns:
        return Verdict("inconclusive", f"inconclusive: metric {leaf.metric} not recorded", **base)
    return _LEAF_KINDS[kind](leaf, runs, base, spec)


def _correct(tree: Verdict) -> None:
    """Holm across the counted compare / threshold leaves; a leaf keeps its side only if its
    corrected test rejects too."""
    tested = [
        v
        for v in tree.leaves()
        if v.kind in ("compare", "threshold") and v.rule.get("counts", True) and v.side
    ]
    if not tested:
        return
    alpha = 1 - float(tested[0].rule.get("confidence", 0.95))
    reject, adjusted = stats.holm([v.p_value for v in tested], alpha)
    family = int(np.isfinite([v.p_value for v in tested]).sum())
    for v, rejected, p_holm in zip(tested, reject, adjusted, strict=True):
        v.p_holm = float(p_holm)
        test = f"p = {v.p_value:.3g}, Holm-adjusted p = {p_holm:.3g} over {family} test(s)"
        if v.side == "inconclusive":
            v.verdict = "inconclusive"
        elif rejected:
            v.verdict = v.side
        else:
            v.verdict = "inconclusive"
            test += ": not significant after the correction"
        v.reason = f"{v.reason}; {test}"
    # Evidence-only leaves keep the side their interval shows, without a correction.
    for v in tree.leaves():
        if v.side and not v.rule.get("counts", True):
            v.verdict = v.side


def _combine(tree: Verdict) -> Verdict:
    """all: contradicted if one rule is, supported if all are; any: the other way round.
    Evidence-only rules (counts: false) are shown but do not vote."""
    if tree.kind not in ("all", "any"):
        return tree
    for child in tree.children:
        _combine(child)
    kind = tree.kind
    verdicts = [c.verdict for c in tree.children if c.rule.get("counts", True)]
    if not verdicts:
        tree.verdict, tree.reason = "inconclusive", f"{kind}: no rule that counts"
        return tree
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
    tree.verdict, tree.reason = verdict, f"{kind} of {len(verdicts)} rules: {counts}"
    return tree


def evaluate_threshold(leaf, runs: pd.DataFrame, base: dict, spec=None) -> Verdict:
    """The mean of the selected group is above (or below) `value`: its interval and the one-sample
    t test against `value` decide (see the module docstring)."""
    group = group_values(runs, leaf.where, leaf, _label(leaf.where), spec)
    problem = _too_few(group, leaf)
    if problem:
        return Verdict("inconclusive", problem, groups=[group], **base)
    lo, hi = group.ci
    claimed = f"mean {'<' if leaf.direction == 'less' else '>'} {leaf.value:g}"
    side = _side(lo, hi, leaf.value, leaf.direction == "greater")
    values = np.asarray(group.values, float)
    p_value = stats.difference_p_value(values, np.full(len(values), leaf.value), paired=True)
    reason = (
        f"{claimed}: mean {group.mean:.4g}, {leaf.confidence:.0%} {group.interval} CI "
        f"[{lo:.4g}, {hi:.4g}], n={len(group.values)}"
    )
    return Verdict(
        side,
        reason,
        estimate=group.mean,
        ci=group.ci,
        groups=[group],
        p_value=p_value,
        side=side,
        **base,
    )


def evaluate_compare(leaf, runs: pd.DataFrame, base: dict, spec=None) -> Verdict:
    """mean(A) - mean(B) is above (or below) `margin`: the interval of the difference and the
    t test against the margin decide (see the module docstring)."""
    groups, difference = _difference(leaf, runs, base, spec)
    if isinstance(difference, Verdict):
        return difference
    estimate, a, b, interval = difference
    lo, hi = estimate.low, estimate.high
    side = _side(lo, hi, leaf.margin, leaf.direction == "greater")
    greater = leaf.direction == "greater"
    p_value = stats.difference_p_value(a - leaf.margin, b, leaf.paired)
    p_better = stats.probability_of_improvement(
        a, b, leaf.paired, _spec(spec, leaf), higher_is_better=greater
    )
    claimed = f"A {'>' if greater else '<'} B" + (f" by {leaf.margin:g}" if leaf.margin else "")
    better = (
        f"; P(A {'>' if greater else '<'} B) = {p_better.value:.2f} "
        f"[{p_better.low:.2f}, {p_better.high:.2f}]"
        if math.isfinite(p_better.low)
        else (f"; P(A {'>' if greater else '<'} B) = {p_better.value:.2f}")
    )
    return Verdict(
        side,
        f"{claimed}: {interval}{better}",
        estimate=estimate.value,
        ci=(lo, hi),
        groups=groups,
        p_value=p_value,
        p_better=p_better,
        side=side,
        **base,
    )


def evaluate_equivalent(leaf, runs: pd.DataFrame, base: dict, spec=None) -> Verdict:
    """|mean(A) - mean(B)| < `margin`: the whole interval of the difference inside (-m, m)."""
    groups, difference = _difference(leaf, runs, base, spec)
    if isinstance(difference, Verdict):
        return difference
    estimate, _a, _b, interval = difference
    lo, hi, m = estimate.low, estimate.high, leaf.margin
    verdict = (
        "supported"
        if -m < lo and hi < m
        else ("contradicted" if lo > m or hi < -m else "inconclusive")
    )
    return Verdict(
        verdict,
        f"|A-B| < {m:g}: {interval}",
        estimate=estimate.value,
        ci=(lo, hi),
        groups=groups,
        **base,
    )


def _difference(leaf, runs: pd.DataFrame, base: dict, spec=None):
    """Groups A and B, and (the difference's Estimate, A's values, B's values, the interval in
    words); or a Verdict (inconclusive) in place of the difference when a group has too few
    values or pairs. Paired: A's and B's values are the matched seeds, in the same order."""
    ga = group_values(runs, leaf.a, leaf, _label(leaf.a), spec)
    gb = group_values(runs, leaf.b, leaf, _label(leaf.b), spec)
    for g in (ga, gb):
        problem = _too_few(g, leaf)
        if problem:
            return [ga, gb], Verdict("inconclusive", problem, groups=[ga, gb], **base)
    if leaf.paired:
        common = dict(zip(gb.seeds, gb.values, strict=False))
        pairs = [(x, common[s]) for s, x in zip(ga.seeds, ga.values, strict=False) if s in common]
        if len(pairs) < leaf.min_seeds:
            return [ga, gb], Verdict(
                "inconclusive",
                f"inconclusive: {len(pairs)} seed pair(s), needs {leaf.min_seeds}",
                groups=[ga, gb],
                **base,
            )
        a, b = (np.asarray(x, float) for x in zip(*pairs, strict=True))
        counted = f"{len(pairs)} seed pairs"
    else:
        a, b = np.asarray(ga.values, float), np.asarray(gb.values, float)
        counted = f"n={len(a)}, {len(b)}"
    estimate = stats.difference_estimate(a, b, leaf.paired, _spec(spec, leaf), _bounds(leaf))
    method = estimate.method or "no"
    interval = (
        f"A-B = {estimate.value:.4g}, {leaf.confidence:.0%} {method} CI "
        f"[{estimate.low:.4g}, {estimate.high:.4g}] ({counted})"
    )
    return [ga, gb], (estimate, a, b, interval)


# Each leaf kind's evaluation (all and any nest them: _evaluate_tree).
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
