"""Performance profile and critical-difference ranking: numbers by hand, figures from synthetic runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from keras_ablate.analysis import simulate
from keras_ablate.analysis import stats as S
from keras_ablate.analysis.tables import load
from keras_ablate.report import rankings


def test_friedman_and_nemenyi_match_the_formulas_and_demsars_table():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 5)) + np.array([0.0, 0.3, 0.6, 0.9, 1.2])  # continuous: no ties
    r = S.friedman_nemenyi(x)
    ranks = np.argsort(np.argsort(-x, axis=1), axis=1) + 1  # 1 = the highest value of a block
    n, k = x.shape
    np.testing.assert_allclose(r.mean_ranks, ranks.mean(axis=0))
    chi2 = 12 * n / (k * (k + 1)) * (np.sum(ranks.mean(axis=0) ** 2) - k * (k + 1) ** 2 / 4)
    assert r.statistic == pytest.approx(chi2)
    # chi-square with k - 1 = 4 degrees of freedom: sf(x) = exp(-x/2) (1 + x/2).
    assert r.p_value == pytest.approx(math.exp(-chi2 / 2) * (1 + chi2 / 2))
    # Demsar (2006), Table 5: q_0.05 = 2.728 for 5 classifiers.
    assert r.critical_difference == pytest.approx(
        2.728 * math.sqrt(k * (k + 1) / (6 * n)), rel=1e-3
    )
    lower = S.friedman_nemenyi(-x, higher_is_better=False)
    np.testing.assert_allclose(lower.mean_ranks, r.mean_ranks)
    assert S.friedman_nemenyi(x[:, :2]) is None


def test_performance_profile_is_the_share_of_runs_at_or_beyond_each_threshold():
    values = [0.5, 0.7, 0.7, 0.9, np.nan]
    np.testing.assert_allclose(
        S.performance_profile(values, [0.4, 0.5, 0.7, 0.8, 1.0]), [1, 1, 0.75, 0.25, 0]
    )
    np.testing.assert_allclose(S.performance_profile(values, [0.6, 0.7], False), [0.25, 0.75])


def test_the_figures_rank_the_blocks_of_matched_runs(tmp_path):
    exp = tmp_path / "r"
    effect = {"tanh": 0.6, "relu": 0.7, "elu": 0.9}
    simulate.write_experiment(
        exp, {"activation": list(effect), "clip": ["none", "norm:1.0"]}, seeds=3, epochs=2,
        steps_per_epoch=2, effect=lambda axes: effect[axes["activation"]],
        divergence=lambda axes: 0.0, seed=4,
    )  # fmt: skip
    tables = load(exp)
    assert rankings.most_important_axis(tables) == "activation"
    blocks = rankings.rank_blocks(tables, "activation")
    assert blocks.shape == (6, 3)  # 2 clip levels x 3 seeds
    runs = tables.runs
    first = runs[(runs["clip"] == "none") & (runs["seed"] == 0)].set_index("activation")["score"]
    np.testing.assert_allclose(blocks.iloc[0].to_numpy(), first[list(effect)].to_numpy())
    figure = rankings.critical_difference(tables)
    assert "Friedman" in figure.axes[0].get_title()
    profile = rankings.performance_profile(tables)
    assert [t.get_text() for t in profile.axes[0].get_legend().get_texts()] == [
        "tanh", "relu", "elu"
    ]  # fmt: skip


def test_figure_bands_are_the_tables_bootstrap_kept_in_range():
    from keras_ablate.report import plots

    rng = np.random.default_rng(5)
    near_one = np.clip(rng.normal(0.985, 0.02, size=(6, 8)), 0, 1)  # accuracies near 1
    near_one[0] = [1, 1, 1, 1, 1, 1, 0.9, 0.85]
    frame = pd.DataFrame(
        {"arm": np.repeat(["a", "b", "c", "d", "e", "f"], 8), "epoch": 1,
         "value": near_one.ravel()}
    )  # fmt: skip
    frame.loc[frame["arm"] == "f", "value"] = 0.5  # a constant group
    spec = S.IntervalSpec(resamples=500)
    band = plots._mean_band(frame, ["arm"], "epoch", spec, (0.0, 1.0))
    assert (band["ci_high"] <= 1.0).all() and (band["ci_low"] >= 0.0).all()
    for (_, group), row in zip(frame.groupby("arm"), band.to_dict("records"), strict=True):
        alone = S.mean_estimate(group["value"].to_numpy(), spec, (0.0, 1.0))
        # The same BCa interval; stacked groups draw other resamples: Monte Carlo noise only.
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((alone.low, alone.high), abs=2e-3)
    t = S.mean_interval(near_one[0])  # the t interval of the first group leaves [0, 1]
    assert t[1] > 1.0 and band["ci_high"].iloc[0] <= 1.0
