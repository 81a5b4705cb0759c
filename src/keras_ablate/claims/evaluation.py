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

import numpy as np
import pandas as pd

from keras_ablate.analysis import stats
from keras_ablate.analysis.stats import IntervalSpec
from keras_ablate.claims.groups import (  # noqa: F401 - select and Group are used by claims.report
    Group,
    _bounds,
    _label,
    _spec,
    _too_few,
    group_values,
    select,
)
from keras_ablate.claims.rules import VERDICTS, Rule


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
