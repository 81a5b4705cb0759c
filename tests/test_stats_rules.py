"""analysis.stats function by function, each number from scipy, a closed form or a hand count.

Fast (no simulation of thousands of experiments: those are in test_stats.py) so that the
mutation run (docs/MUTATION.md) can run them once per mutant.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from keras_ablate.analysis import stats as S

BOOT = S.IntervalSpec("bootstrap", resamples=999, seed=5)


def _scipy_bootstrap(samples, statistic, level, method, resamples=999, seed=5):
    ci = sps.bootstrap(
        samples,
        statistic,
        n_resamples=resamples,
        confidence_level=level,
        method=method,
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return ci.low, ci.high


def test_t_intervals_match_scipys_t_distribution():
    x = np.array([0.61, 0.65, 0.70, 0.58, 0.66])
    half = sps.t.ppf(0.975, 4) * x.std(ddof=1) / math.sqrt(5)
    assert S.mean_interval(x) == pytest.approx((x.mean() - half, x.mean() + half))
    lo, hi = sps.t.interval(0.9, 4, loc=x.mean(), scale=sps.sem(x))
    assert S.mean_interval(x, 0.9) == pytest.approx((lo, hi))
    low, high = S.t_interval(
        np.array([5, 1]), np.array([x.mean(), 2.0]), np.array([x.std(ddof=1), 1.0])
    )
    assert low[0] == pytest.approx(x.mean() - half) and high[0] == pytest.approx(x.mean() + half)
    assert math.isnan(low[1]) and math.isnan(high[1])  # one value: no interval
    assert all(math.isnan(v) for v in S.mean_interval([0.5]))
    mean, low, high = S.paired_interval([0.1, 0.3, 0.2])
    ref = sps.ttest_1samp([0.1, 0.3, 0.2], 0).confidence_interval()
    assert (mean, low, high) == pytest.approx((0.2, ref.low, ref.high))


def test_welch_interval_matches_scipys_welch_test():
    a, b = np.array([0.8, 0.9, 0.85, 0.95]), np.array([0.5, 0.7, 0.6])
    ref = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    diff, low, high = S.welch_interval(a, b)
    assert (diff, low, high) == pytest.approx((a.mean() - b.mean(), ref.low, ref.high))
    ref90 = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.9)
    assert S.welch_interval(a, b, 0.9)[1:] == pytest.approx((ref90.low, ref90.high))
    assert S.welch_interval([1.0, 1.0], [0.5, 0.5]) == (0.5, 0.5, 0.5)  # no spread: zero width
    one = S.welch_interval([1.0], [0.5, 0.7])
    assert one[0] == pytest.approx(0.4) and math.isnan(one[1]) and math.isnan(one[2])
    assert math.isnan(S.welch_interval([1.0, 2.0], [0.5])[2])


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_expanded_confidence_is_hesterbergs_formula(n):
    # 1 - 2 Phi(-sqrt(n/(n-1)) t_{0.975, n-1}), written out with the normal cdf.
    z = math.sqrt(n / (n - 1)) * sps.t.ppf(0.975, n - 1)
    expected = 1 - 2 * (0.5 * math.erfc(z / math.sqrt(2)))
    assert S.expanded_confidence(n) == pytest.approx(expected)
    assert S.expanded_confidence(n) > 0.95
    z90 = math.sqrt(n / (n - 1)) * sps.t.ppf(0.95, n - 1)
    assert S.expanded_confidence(n, 0.9) == pytest.approx(1 - math.erfc(z90 / math.sqrt(2)))
    assert S.expanded_confidence(1) == 0.95 and S.expanded_confidence(1, 0.8) == 0.8


def test_bootstrap_interval_is_scipys_bca_at_the_expanded_level_else_percentile():
    x = np.array([0.2, 0.5, 0.1, 0.4, 0.3, 0.9])
    low, high, method = S.bootstrap_interval((x,), S._mean, BOOT)
    ref = _scipy_bootstrap((x,), np.mean, S.expanded_confidence(6), "BCa")
    assert method == "BCa" and (float(low), float(high)) == pytest.approx(ref)
    low, high, _ = S.bootstrap_interval((x,), S._mean, BOOT, expand=False)
    assert (float(low), float(high)) == pytest.approx(_scipy_bootstrap((x,), np.mean, 0.95, "BCa"))
    # Two values: BCa's jackknife is degenerate, the percentile interval is used at once.
    low, high, method = S.bootstrap_interval(([0.1, 0.5],), S._mean, BOOT)
    ref = _scipy_bootstrap(([0.1, 0.5],), np.mean, S.expanded_confidence(2), "percentile")
    assert method == "percentile" and (float(low), float(high)) == pytest.approx(ref)
    # A statistic that no resample moves (every pair a win): BCa's acceleration is 0 / 0, so the
    # call falls back to percentile.
    wins = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    low, high, method = S.bootstrap_interval((wins,), S._wins_paired, BOOT)
    assert method == "percentile" and (float(low), float(high)) == (1.0, 1.0)
    # Two groups: the difference of means, each group resampled on its own; the level from the
    # smaller group.
    a, b = np.array([0.6, 0.7, 0.65, 0.8, 0.75]), np.array([0.5, 0.52, 0.61, 0.4, 0.55, 0.58])
    low, high, method = S.bootstrap_interval((a, b), S._mean_difference, BOOT)
    ref = _scipy_bootstrap(
        (a, b), lambda u, v, axis=-1: u.mean(axis) - v.mean(axis), S.expanded_confidence(5), "BCa"
    )
    assert method == "BCa" and (float(low), float(high)) == pytest.approx(ref)


def test_clip_and_the_range_of_a_difference():
    assert S.clip(-0.1, 0.5, (0.0, 1.0)) == (0.0, 0.5, True)
    assert S.clip(0.2, 1.3, (0.0, 1.0)) == (0.2, 1.0, True)
    assert S.clip(0.2, 0.5, (0.0, 1.0)) == (0.2, 0.5, False)
    assert S.clip(0.0, 1.0, (0.0, 1.0)) == (0.0, 1.0, False)  # at the bounds: not cut
    assert S.clip(-3.0, 3.0, None) == (-3.0, 3.0, False)
    low, high, cut = S.clip(math.nan, 2.0, (0.0, 1.0))
    assert math.isnan(low) and high == 2.0 and cut is False
    assert S.clip(0.5, math.inf, (0.0, 1.0))[1:] == (math.inf, False)
    assert S.difference_range((0.0, 1.0)) == (-1.0, 1.0)
    assert S.difference_range((2.0, 5.0)) == (-3.0, 3.0)
    assert S.difference_range(None) is None


def test_mean_estimate_takes_each_branch():
    assert math.isnan(S.mean_estimate([]).value)
    nan_only = S.mean_estimate([math.nan, math.inf])
    assert math.isnan(nan_only.value) and nan_only.method == ""
    one = S.mean_estimate([0.4, math.nan])
    assert one.value == 0.4 and math.isnan(one.low) and math.isnan(one.high) and one.method == ""
    const = S.mean_estimate([0.3, 0.3, 0.3], BOOT)
    assert (const.value, const.low, const.high, const.method) == (0.3, 0.3, 0.3, "constant")
    x = [0.61, 0.65, 0.70, 0.58, 0.66]
    t = S.mean_estimate(x, S.T)
    assert (t.low, t.high) == pytest.approx(S.mean_interval(x)) and t.method == "t"
    assert t.clipped is False
    few = S.mean_estimate(x[:4], BOOT)
    assert few.method == "t (n<5)" and (few.low, few.high) == pytest.approx(S.mean_interval(x[:4]))
    boot = S.mean_estimate(x, BOOT)
    ref = _scipy_bootstrap((np.array(x),), np.mean, S.expanded_confidence(5), "BCa")
    assert boot.method == "BCa" and (boot.low, boot.high) == pytest.approx(ref)
    assert boot.value == pytest.approx(np.mean(x))
    cut = S.mean_estimate([0.9, 1.0, 0.95], S.T, (0.0, 1.0))
    assert (
        cut.high == 1.0
        and cut.clipped
        and cut.low == pytest.approx(S.mean_interval([0.9, 1.0, 0.95])[0])
    )
    assert S.mean_estimate(
        [0.9, 1.0, 0.95], S.IntervalSpec(confidence=0.5), None
    ).high == pytest.approx(sps.t.interval(0.5, 2, loc=0.95, scale=sps.sem([0.9, 1.0, 0.95]))[1])


def test_difference_estimate_paired_and_unpaired_branches():
    a, b = np.array([0.7, 0.8, 0.75]), np.array([0.6, 0.65, 0.7])
    paired = S.difference_estimate(a, b, True, S.T)
    ref = sps.ttest_rel(a, b).confidence_interval()
    assert paired.value == pytest.approx(0.1) and paired.method == "paired t"
    assert (paired.low, paired.high) == pytest.approx((ref.low, ref.high))
    assert S.difference_estimate(a, b, True, BOOT).method == "paired t (n<5)"
    constant = S.difference_estimate([0.5, 0.6], [0.4, 0.5], True, BOOT)
    assert constant.method == "constant" and constant.low == constant.high == pytest.approx(0.1)
    # The paired difference is kept in [-1, 1] for accuracies.
    wide = S.difference_estimate([1.0, 0.2], [0.0, 0.1], True, S.T, (0.0, 1.0))
    assert wide.high == 1.0 and wide.clipped
    unpaired = S.difference_estimate(a, b[:2], False, S.T)
    ref = sps.ttest_ind(a, b[:2], equal_var=False).confidence_interval()
    assert unpaired.method == "welch" and (unpaired.low, unpaired.high) == pytest.approx(
        (ref.low, ref.high)
    )
    assert S.difference_estimate(a, b[:2], False, BOOT).method == "welch (n<5)"
    single = S.difference_estimate([0.7], [0.6, 0.5], False, S.T)
    assert single.value == pytest.approx(0.15) and math.isnan(single.low) and single.method == ""
    flat = S.difference_estimate([0.7, 0.7], [0.6, 0.6, 0.6], False, S.T)
    assert flat.low == flat.high == pytest.approx(0.1) and flat.method == "constant"
    g1, g2 = np.array([0.6, 0.7, 0.65, 0.8, 0.75]), np.array([0.5, 0.52, 0.61, 0.4, 0.55])
    boot = S.difference_estimate(g1, g2, False, BOOT, (0.0, 1.0))
    ref = _scipy_bootstrap(
        (g1, g2), lambda u, v, axis=-1: u.mean(axis) - v.mean(axis), S.expanded_confidence(5), "BCa"
    )
    assert boot.method == "BCa" and (boot.low, boot.high) == pytest.approx(ref)
    cut = S.difference_estimate([1.0, 0.9], [0.0, 0.3], False, S.T, (0.0, 1.0))
    assert (
        cut.high == 1.0
        and cut.clipped
        and cut.low
        == pytest.approx(
            sps.ttest_ind([1.0, 0.9], [0.0, 0.3], equal_var=False).confidence_interval().low
        )
    )


def test_iqm_is_the_25_percent_trimmed_mean_from_four_values():
    x = [1.0, 2.0, 3.0, 4.0, 100.0, -50.0, 5.0, 6.0]
    assert S.iqm(x) == pytest.approx(np.mean(sorted(x)[2:6]))
    assert S.iqm([1.0, 2.0, 3.0, 10.0]) == pytest.approx(2.5)
    assert math.isnan(S.iqm([1.0, 2.0, 3.0])) and math.isnan(S.iqm([1.0, 2.0, 3.0, math.nan]))


def test_probability_of_improvement_branches_and_its_bootstrap_interval():
    assert math.isnan(S.probability_of_improvement([], [1.0], True).value)
    assert math.isnan(S.probability_of_improvement([1.0], [], False).value)
    one = S.probability_of_improvement([2.0], [1.0], True)
    assert one.value == 1.0 and math.isnan(one.low) and one.method == ""
    same = S.probability_of_improvement([2.0, 2.0], [1.0, 1.0], False)
    assert (same.value, same.low, same.high, same.method) == (1.0, 1.0, 1.0, "constant")
    a, b = np.array([0.7, 0.6, 0.8, 0.5, 0.9]), np.array([0.6, 0.65, 0.7, 0.5, 0.6])
    est = S.probability_of_improvement(a, b, True, BOOT)
    assert est.value == pytest.approx((1 + 0 + 1 + 0.5 + 1) / 5)
    d = a - b
    ref = sps.bootstrap(
        (d,),
        lambda x, axis=-1: np.mean((x > 0) + 0.5 * (x == 0), axis=axis),
        n_resamples=999,
        confidence_level=S.expanded_confidence(5),
        method="BCa",
        rng=np.random.default_rng(5),
    ).confidence_interval
    assert est.method in ("BCa", "percentile") and est.low <= est.value <= est.high
    if est.method == "BCa":
        assert (est.low, est.high) == pytest.approx((ref.low, ref.high))
    # A t spec still bootstraps P(improvement) (there is no t interval for it).
    t_spec = S.probability_of_improvement(a, b, True, S.IntervalSpec("t", 999, 5))
    assert (t_spec.low, t_spec.high, t_spec.method) == (est.low, est.high, est.method)
    lower = S.probability_of_improvement(a, b, True, BOOT, higher_is_better=False)
    assert lower.value == pytest.approx((0 + 1 + 0 + 0.5 + 0) / 5)
    unpaired = S.probability_of_improvement([0.1, 0.3], [0.2, 0.2, 0.4], False, BOOT)
    assert unpaired.value == pytest.approx(2 / 6)


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy, on the constant group
def test_difference_p_value_is_the_paired_or_welch_t_test_with_constant_cases():
    a, b = [0.7, 0.8, 0.75, 0.9], [0.6, 0.65, 0.7, 0.6]
    assert S.difference_p_value(a, b, True) == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert S.difference_p_value(a, b, False) == pytest.approx(
        sps.ttest_ind(a, b, equal_var=False).pvalue
    )
    assert math.isnan(S.difference_p_value([1.0], [0.0], True))
    assert math.isnan(S.difference_p_value([1.0], [0.0, 0.5], False))
    assert math.isnan(S.difference_p_value([1.0, 2.0], [0.5], False))
    assert S.difference_p_value([1.0, 2.0], [0.5, 1.5], True) == 0.0  # constant nonzero difference
    assert S.difference_p_value([1.0, 2.0], [1.0, 2.0], True) == 1.0  # constant zero difference
    assert S.difference_p_value([1.0, 1.0], [0.5, 0.5, 0.5], False) == 0.0
    assert S.difference_p_value([1.0, 1.0], [1.0, 1.0, 1.0], False) == 1.0
    # One group constant, the other not: Welch's test as scipy computes it.
    assert S.difference_p_value([1.0, 1.0, 1.0], [0.5, 0.7, 0.6], False) == pytest.approx(
        sps.ttest_ind([1.0, 1.0, 1.0], [0.5, 0.7, 0.6], equal_var=False).pvalue
    )


def test_holm_by_hand_with_ties_and_nans():
    p = [0.01, 0.04, math.nan, 0.03, 0.2]
    reject, adjusted = S.holm(p, 0.05)
    # m = 4 finite: sorted 0.01, 0.03, 0.04, 0.2 -> 0.04, 0.09, 0.09 (running max of 0.08), 0.2.
    np.testing.assert_allclose(adjusted[[0, 3, 1, 4]], [0.04, 0.09, 0.09, 0.2])
    assert math.isnan(adjusted[2]) and reject.tolist() == [True, False, False, False, False]
    reject, _ = S.holm(p, 0.1)
    assert reject.tolist() == [True, True, False, True, False]
    assert S.holm([0.6, 0.7])[1].tolist() == [1.0, 1.0]  # capped at 1
    assert S.holm([0.04])[0].tolist() == [True]  # at alpha: rejected (p <= alpha)
    assert S.holm([0.05])[0].tolist() == [True] and S.holm([0.0501])[0].tolist() == [False]
    r, a = S.holm([math.nan, math.nan])
    assert not r.any() and np.isnan(a).all()
    assert len(S.holm([])[0]) == 0


def test_seeds_needed_edges_and_the_power_argument():
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.9)
    assert S.seeds_needed(0.1, 0.1, True, power=0.9) == math.ceil(z**2)
    assert S.seeds_needed(1.0, 0.01, True) == 2  # at least 2
    assert S.seeds_needed(0.1, 0.1, False) == math.ceil(
        2 * (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) ** 2
    )
    for effect, sd in ((math.nan, 0.1), (0.1, math.nan), (math.inf, 0.1), (0.0, 0.1)):
        assert math.isnan(S.seeds_needed(effect, sd, True))
    # An exact integer n is not rounded up by floating error: effect = z sd gives n = 1 -> 2;
    # (z sd / effect)^2 = 9 exactly when effect = z sd / 3.
    zz = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    assert S.seeds_needed(zz / 3, 1.0, True) == 9


def test_looks_and_alpha_per_look():
    assert S.looks(5, 5) == 1
    assert S.looks(5, 20, 5) == 4  # at 5, 10, 15, 20
    assert S.looks(5, 21, 5) == 5  # 21 needs a last partial round
    assert S.looks(5, 8) == 4
    assert S.looks(10, 5) == 1  # max below min: one look
    assert S.looks(3, 6, 0) == 4  # step 0 counts as 1
    assert S.alpha_per_look(0.05, 4) == pytest.approx(0.0125)
    assert S.alpha_per_look(0.05, 0) == 0.05 and S.alpha_per_look(0.1, 1) == 0.1


def test_friedman_nemenyi_against_scipy_and_demsars_table():
    x = np.array(
        [[0.9, 0.8, 0.7], [0.85, 0.86, 0.6], [0.92, 0.7, 0.71], [0.8, 0.75, 0.7], [0.95, 0.9, 0.5]]
    )
    r = S.friedman_nemenyi(x)
    assert r.mean_ranks.tolist() == pytest.approx([1.2, 2.0, 2.8])  # by hand: rank 1 = best
    ref = sps.friedmanchisquare(*x.T)
    assert (r.statistic, r.p_value) == pytest.approx((ref.statistic, ref.pvalue))
    assert r.critical_difference == pytest.approx(2.343 * math.sqrt(3 * 4 / (6 * 5)), abs=1e-3)
    assert r.blocks == 5
    low = S.friedman_nemenyi(x, higher_is_better=False)
    assert low.mean_ranks.tolist() == pytest.approx([2.8, 2.0, 1.2])
    four = S.friedman_nemenyi(np.c_[x, x[:, 0] - 0.01])
    assert four.critical_difference == pytest.approx(2.569 * math.sqrt(4 * 5 / 30), abs=1e-3)
    ten = S.friedman_nemenyi(x, alpha=0.10)
    assert ten.critical_difference == pytest.approx(2.052 * math.sqrt(12 / 30), abs=1e-3)
    assert S.friedman_nemenyi(x[:, :2]) is None and S.friedman_nemenyi(x[:1]) is None
    assert S.friedman_nemenyi(np.where(x == 0.7, np.nan, x)) is None
    assert S.friedman_nemenyi(x[0]) is None  # one dimension


def test_performance_profile_is_the_share_at_or_beyond_each_threshold():
    values = [0.5, 0.7, 0.7, 0.9, math.nan]
    np.testing.assert_allclose(S.performance_profile(values, [0.6, 0.7, 1.0]), [0.75, 0.75, 0.0])
    np.testing.assert_allclose(
        S.performance_profile(values, [0.6, 0.7], higher_is_better=False), [0.25, 0.75]
    )
    assert np.isnan(S.performance_profile([math.nan], [0.5, 0.6])).all()
    assert len(S.performance_profile([math.nan], [0.5, 0.6])) == 2


def test_mean_bands_per_group_against_scipy():
    groups = [
        [0.61, 0.65, 0.70, 0.58, 0.66],  # bootstrap (5 runs)
        [0.5, 0.52, 0.61, 0.4, 0.55],  # same size: one vectorized call
        [0.3, 0.3],  # constant
        [0.2, 0.4, 0.3],  # t below 5 runs
        [0.9, math.nan],  # one finite value: no band
    ]
    low, high, methods = S.mean_bands(groups, BOOT)
    assert methods == ["BCa", "BCa", "constant", "t (n<5)", ""]
    for i in (0, 1):
        ref = _scipy_bootstrap((np.array(groups[i]),), np.mean, S.expanded_confidence(5), "BCa")
        # Vectorized over groups the resamples differ from a call per group: same level and
        # method, interval within a few thousandths.
        assert (low[i], high[i]) == pytest.approx(ref, abs=0.02)
        assert low[i] < np.mean(groups[i]) < high[i]
    assert (low[2], high[2]) == (0.3, 0.3)
    assert (low[3], high[3]) == pytest.approx(S.mean_interval(groups[3]))
    assert math.isnan(low[4]) and math.isnan(high[4])
    t_low, t_high, t_methods = S.mean_bands(groups, S.T, (0.0, 0.6))
    assert t_methods[:2] == ["t", "t"]
    assert t_low[0] == pytest.approx(S.mean_interval(groups[0])[0])
    assert t_high[0] == 0.6  # cut to the bounds
    assert t_low[3] == pytest.approx(max(0.0, S.mean_interval(groups[3])[0]))


def test_group_intervals_count_mean_std_and_t_bounds_per_group():
    frame = pd.DataFrame(
        {
            "g": ["a", "a", "a", "b", "b", "c"],
            "x": [1.0, 2.0, 4.0, 3.0, math.nan, 5.0],
            "y": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        }
    )
    out = S.group_intervals(frame, ["g"], ["x", "y"])
    assert list(out.columns) == ["g", "metric", "n", "mean", "std", "ci_low", "ci_high", "iqm"]
    row = out[(out["g"] == "a") & (out["metric"] == "x")].iloc[0]
    half = sps.t.ppf(0.975, 2) * np.std([1, 2, 4], ddof=1) / math.sqrt(3)
    assert row["n"] == 3 and row["mean"] == pytest.approx(7 / 3)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((7 / 3 - half, 7 / 3 + half))
    b = out[(out["g"] == "b") & (out["metric"] == "x")].iloc[0]
    assert b["n"] == 1 and math.isnan(b["ci_low"])  # the NaN is left out of n
    assert len(out) == 6 and out["metric"].tolist() == ["x"] * 3 + ["y"] * 3
    spec = S.group_intervals(frame, ["g"], ["y"], spec=S.T, bounds={"y": (0.0, 0.25)})
    a = spec.iloc[0]
    assert a["interval"] == "t" and a["clipped"] and a["ci_high"] == 0.25
    whole = S.group_intervals(frame, [], ["y"], spec=S.T)
    assert (
        len(whole) == 1 and whole["n"].iloc[0] == 6 and whole["iqm"].iloc[0] == pytest.approx(0.35)
    )
    assert whole["mean"].iloc[0] == pytest.approx(0.35)


def test_the_interval_spec_from_info_and_its_description():
    spec = S.IntervalSpec.from_info({"analysis": {"interval": "t", "resamples": 500}})
    assert (spec.kind, spec.resamples, spec.seed, spec.confidence) == ("t", 500, 0, 0.95)
    assert S.IntervalSpec.from_info(None) == S.IntervalSpec("bootstrap", 2000, 0, 0.95)
    assert S.IntervalSpec.from_info({"analysis": None}).kind == "bootstrap"
    assert S.T.describe().startswith("95 % Student t intervals")
    text = S.IntervalSpec(resamples=999, seed=4).describe()
    assert "999 resamples, seed 4" in text and text.startswith("95 % bootstrap")
    assert "fewer than 5 runs" in text
    assert S.IntervalSpec(confidence=0.9).describe().startswith("90 % ")


# ---------------------------------------------------------------- from the mutation survivors


NINETY = S.IntervalSpec("t", resamples=999, seed=5, confidence=0.9)
BOOT90 = S.IntervalSpec("bootstrap", resamples=999, seed=5, confidence=0.9)


def test_the_confidence_level_reaches_every_interval():
    d = [0.1, 0.3, 0.2, 0.25]
    ref = sps.ttest_1samp(d, 0).confidence_interval(0.9)
    assert S.paired_interval(d, 0.9)[1:] == pytest.approx((ref.low, ref.high))
    a, b = [0.7, 0.9, 0.8], [0.5, 0.6, 0.4, 0.55]
    ref = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.9)
    est = S.difference_estimate(a, b, False, NINETY)
    assert (est.low, est.high) == pytest.approx((ref.low, ref.high))
    x = np.array([0.2, 0.5, 0.1, 0.4, 0.3, 0.9])
    low, high, _ = S.bootstrap_interval((x,), S._mean, BOOT90)
    assert (float(low), float(high)) == pytest.approx(
        _scipy_bootstrap((x,), np.mean, S.expanded_confidence(6, 0.9), "BCa")
    )
    # P(better) takes the values k/n: 12 pairs so that 90 % and 95 % give different bounds.
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=12), rng.normal(size=12)
    d = a - b
    p = S.probability_of_improvement(a, b, True, BOOT90)
    ref = _scipy_bootstrap(
        (d,), lambda v, axis=-1: np.mean((v > 0) + 0.5 * (v == 0), axis=axis),
        S.expanded_confidence(12, 0.9), "BCa",
    )  # fmt: skip
    assert p.method == "BCa" and (p.low, p.high) == pytest.approx(ref)
    at_95 = S.probability_of_improvement(a, b, True, BOOT)
    assert (p.low, p.high) != (at_95.low, at_95.high)
    group = [0.2, 0.4, 0.3]
    low, high, _ = S.mean_bands([group], NINETY)
    assert (low[0], high[0]) == pytest.approx(S.mean_interval(group, 0.9))
    frame = pd.DataFrame({"g": ["a"] * 3, "x": group})
    out = S.group_intervals(frame, ["g"], ["x"], confidence=0.9)
    assert (out["ci_low"].iloc[0], out["ci_high"].iloc[0]) == pytest.approx(
        S.mean_interval(group, 0.9)
    )


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy, on the constant group
def test_three_values_already_get_bca_and_one_constant_group_is_not_a_constant_difference():
    x = np.array([0.1, 0.5, 0.3])
    low, high, method = S.bootstrap_interval((x,), S._mean, BOOT)
    assert method == "BCa"
    assert (float(low), float(high)) == pytest.approx(
        _scipy_bootstrap((x,), np.mean, S.expanded_confidence(3), "BCa")
    )
    est = S.difference_estimate([0.7, 0.7], [0.5, 0.6, 0.7], False, S.T)
    ref = sps.ttest_ind([0.7, 0.7], [0.5, 0.6, 0.7], equal_var=False).confidence_interval()
    assert est.method == "welch" and (est.low, est.high) == pytest.approx((ref.low, ref.high))


def test_unpaired_wins_count_ties_as_half():
    # (1 vs 1) tie, (1 vs 1) tie, (2 vs 1) win, (2 vs 1) win: (0.5 + 0.5 + 1 + 1) / 4.
    assert S.probability_of_improvement([1.0, 2.0], [1.0, 1.0], False).value == 0.75
    assert S._wins_unpaired(np.array([1.0, 1.0]), np.array([1.0, 2.0])) == 0.25


def test_friedman_from_two_blocks():
    r = S.friedman_nemenyi([[0.9, 0.8, 0.7], [0.7, 0.9, 0.6]])
    assert r is not None and r.blocks == 2
    assert r.mean_ranks.tolist() == pytest.approx([1.5, 1.5, 3.0])


def test_mean_bands_go_on_after_a_short_group_and_bootstrap_groups_of_two_sizes():
    groups = [[0.5], [0.61, 0.65, 0.70, 0.58, 0.66], [0.5, 0.52, 0.61, 0.4, 0.55, 0.3]]
    low, high, methods = S.mean_bands(groups, BOOT)
    assert methods == ["", "BCa", "BCa"]
    for i, n in ((1, 5), (2, 6)):
        ref = _scipy_bootstrap((np.array(groups[i]),), np.mean, S.expanded_confidence(n), "BCa")
        assert (low[i], high[i]) == pytest.approx(ref)  # one group of each size: same draws


def test_group_intervals_leave_out_unused_categories_take_the_metrics_range_and_number_rows():
    frame = pd.DataFrame(
        {
            "g": pd.Categorical(["a", "a", "a", "b", "b"], ["a", "b", "unused"]),
            "final/val/accuracy": [0.9, 1.0, 0.95, 0.6, 0.7],
            "y": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    out = S.group_intervals(frame, ["g"], ["final/val/accuracy", "y"], spec=S.T)
    assert list(out.index) == [0, 1, 2, 3] and "unused" not in set(out["g"])
    a = out.iloc[0]
    x = np.array([0.9, 1.0, 0.95])
    assert x.mean() + sps.t.ppf(0.975, 2) * x.std(ddof=1) / math.sqrt(3) > 1
    assert a["ci_high"] == 1.0 and a["clipped"]  # scoring.metric_range: an accuracy
    assert not out.iloc[2]["clipped"]  # y has no range
