"""analysis.stats: bootstrap coverage, intervals kept in range, Holm, P(A > B), seeds needed (issue 18)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy import stats as sps

from keras_ablate import scoring
from keras_ablate.analysis import effects
from keras_ablate.analysis import stats as S
from keras_ablate.config.schema import AnalysisSection
from keras_ablate.report import sections

FAST = S.IntervalSpec(resamples=999, seed=3)


def _coverage(samples, statistic, truth, spec=FAST, expand=True) -> float:
    low, high, method = S.bootstrap_interval(samples, statistic, spec, expand=expand)
    assert method == "BCa"
    return float(np.mean((low <= truth) & (truth <= high)))


@pytest.mark.parametrize("kind", ["paired normal", "unpaired unequal spread", "accuracies"])
def test_bootstrap_covers_a_known_difference_95_percent_of_the_time(kind):
    """1000 simulated experiments of 20 runs per arm, bootstrapped in one vectorized call."""
    rng = np.random.default_rng(20)
    if kind == "paired normal":
        samples, statistic, truth = (rng.normal(0.3, 1.0, (1000, 20)),), S._mean, 0.3
    elif kind == "unpaired unequal spread":
        a, b = rng.normal(0.3, 1.0, (1000, 20)), rng.normal(0.0, 2.0, (1000, 20))
        samples, statistic, truth = (a, b), S._mean_difference, 0.3
    else:  # skewed accuracies near 1: Beta(18, 2) and Beta(9, 1) both have mean 0.9
        a, b = rng.beta(18, 2, (1000, 20)), rng.beta(9, 1, (1000, 20))
        samples, statistic, truth = (a, b), S._mean_difference, 0.0
    assert abs(_coverage(samples, statistic, truth) - 0.95) <= 0.025


def test_plain_bootstrap_from_few_runs_undercovers_which_is_why_it_is_expanded():
    rng = np.random.default_rng(10)
    d = rng.normal(0.3, 1.0, (1000, 10))
    plain = _coverage((d,), S._mean, 0.3, expand=False)
    expanded = _coverage((d,), S._mean, 0.3)
    assert plain < 0.92 and abs(expanded - 0.95) <= 0.025


def test_the_bootstrap_is_seeded_and_matches_scipy():
    d = np.array([0.02, 0.05, -0.01, 0.04, 0.03, 0.06])
    spec = S.IntervalSpec()
    first = S.difference_estimate(d, np.zeros(6), paired=True, spec=spec)
    assert first == S.difference_estimate(d, np.zeros(6), paired=True, spec=spec)
    ref = sps.bootstrap(
        (d,),
        np.mean,
        n_resamples=2000,
        method="BCa",
        confidence_level=S.expanded_confidence(6),
        rng=np.random.default_rng(0),
    ).confidence_interval
    assert (first.method, first.low, first.high) == (
        "BCa",
        pytest.approx(ref.low),
        pytest.approx(ref.high),
    )


def test_intervals_of_accuracies_near_1_stay_inside_0_1():
    acc = np.array([1.0, 0.99, 1.0, 0.97, 1.0, 0.995])
    t = S.mean_estimate(acc, S.T, (0.0, 1.0))
    raw_high = S.mean_interval(acc)[1]
    assert raw_high > 1 and t.high == 1.0 and t.clipped  # the t interval left [0, 1]: cut
    boot = S.mean_estimate(acc, S.IntervalSpec(), (0.0, 1.0))
    assert boot.method == "BCa" and 0 <= boot.low <= boot.high <= 1
    few = S.mean_estimate(acc[:3], S.IntervalSpec(), (0.0, 1.0))  # t below 5 runs, cut
    assert few.method == "t (n<5)" and few.high == 1.0 and few.clipped
    low_arm = np.array([0.0, 0.02, 0.0, 0.01])
    diff = S.difference_estimate(acc[:4], low_arm, paired=False, spec=S.T, bounds=(0.0, 1.0))
    assert -1 <= diff.low <= diff.high <= 1
    frame = pd.DataFrame({"g": ["a"] * 6 + ["b"] * 3, "score": [*acc, 1.0, 0.98, 1.0]})
    out = S.group_intervals(
        frame, ["g"], ["score"], spec=S.IntervalSpec(), bounds={"score": (0, 1)}
    )
    assert (out["ci_high"] <= 1).all() and (out["ci_low"] >= 0).all()
    assert list(out["interval"]) == ["BCa", "t (n<5)"]


def test_holm_turns_an_uncorrected_yes_into_a_no():
    """Three paired comparisons; the first alone would be declared (p = 0.03 < 0.05)."""
    runs = pd.DataFrame(
        {
            "a": ["x", "y"] * 5,
            "seed": np.repeat(range(5), 2),
            "score": [0.0, 0.10, 0.0, 0.01, 0.0, 0.08, 0.0, 0.05, 0.0, 0.03],
        }
    )
    rows = [effects.difference(runs, ["a"], "a", "y", "x", "score", S.IntervalSpec())]
    assert rows[0]["p_value"] == pytest.approx(
        sps.ttest_1samp([0.1, 0.01, 0.08, 0.05, 0.03], 0).pvalue
    )
    assert 0.05 / 3 < rows[0]["p_value"] < 0.05 and rows[0]["diff_low"] > 0  # uncorrected: yes
    for p in (0.4, 0.7):
        rows.append({**rows[0], "p_value": p})
    table = pd.DataFrame(rows)
    effects.decide(table)
    assert table.attrs["family"] == 3
    assert table["p_holm"].iloc[0] == pytest.approx(3 * rows[0]["p_value"])
    assert not table["resolved"].iloc[0]
    assert sections.decision_text(table.iloc[0].to_dict()) == "no"
    alone = pd.DataFrame(rows[:1])
    effects.decide(alone)
    assert alone["resolved"].iloc[0]  # a family of one keeps the decision


def test_probability_of_improvement_counts_wins_and_half_ties():
    a, b = [3.0, 1.0, 2.0, 5.0], [1.0, 1.0, 3.0, 4.0]  # pairs: win, tie, loss, win
    paired = S.probability_of_improvement(a, b, paired=True)
    assert paired.value == (1 + 0.5 + 0 + 1) / 4
    assert 0 <= paired.low <= paired.value <= paired.high <= 1
    a, b = [1.0, 3.0], [2.0, 2.0, 0.0]  # 1 beats 0; 3 beats all three: 4 of 6
    unpaired = S.probability_of_improvement(a, b, paired=False)
    u = sps.mannwhitneyu(a, b).statistic
    assert unpaired.value == pytest.approx(4 / 6) == pytest.approx(u / 6)
    # A lower loss is better: A's losses are all lower.
    assert (
        S.probability_of_improvement([0.1, 0.2], [0.3, 0.4], False, higher_is_better=False).value
        == 1
    )


def test_seeds_needed_is_the_normal_approximation():
    z = 1.959963984540054 + 0.8416212335729143
    assert S.seeds_needed(0.05, 0.1, paired=True) == math.ceil((z * 0.1 / 0.05) ** 2) == 32
    assert S.seeds_needed(0.05, 0.1, paired=False) == math.ceil(2 * (z * 0.1 / 0.05) ** 2) == 63
    assert S.seeds_needed(-0.05, 0.1, paired=True, alpha=0.01) == math.ceil(
        ((sps.norm.ppf(0.995) + sps.norm.ppf(0.8)) * 2) ** 2
    )
    assert math.isnan(S.seeds_needed(0.0, 0.1, paired=True))
    # In a table: 2 pairs per seed (another axis with two levels), family of 1 (alpha 0.05).
    table = pd.DataFrame(
        [
            {
                "diff": 0.05,
                "p_value": 0.5,
                "diff_sd": 0.1,
                "diff_method": "paired",
                "diff_per_seed": 2.0,
            }
        ]
    )
    effects.decide(table, min_effect=0.1)
    assert table["seeds_needed"].iloc[0] == 16  # 32 pairs / 2 per seed
    assert table["seeds_needed_min"].iloc[0] == math.ceil(math.ceil((z * 0.1 / 0.1) ** 2) / 2)


def test_the_interval_is_a_setting():
    assert AnalysisSection().interval == "bootstrap" and AnalysisSection().resamples == 2000
    assert AnalysisSection(interval="t", min_effect=0.01).min_effect == 0.01
    with pytest.raises(ValidationError):
        AnalysisSection(interval="jackknife")
    assert S.IntervalSpec.from_info({"analysis": {"interval": "t"}}) == S.T
    assert "Student t" in S.T.describe() and "2000 resamples" in S.IntervalSpec().describe()


def test_the_report_says_which_interval_and_corrects_its_decisions(tmp_path):
    from keras_ablate import store
    from keras_ablate.analysis import simulate
    from keras_ablate.report.render import build_report

    exp = tmp_path / "s"
    grid = {"architecture": ["rnn", "lstm"], "activation": ["tanh", "relu"]}
    simulate.write_experiment(exp, grid, seeds=3, epochs=2, steps_per_epoch=2, seed=1)
    md = (build_report(exp)["md"]).read_text()
    assert "2000 resamples" in md and "Holm-corrected across 2 comparisons" in md
    assert "P(better) [95% CI]" in md and "seeds needed per arm" in md
    info = store.read_experiment(exp)
    store.write_json_atomic(
        exp / "experiment.json", {**info, "analysis": {**info["analysis"], "interval": "t"}}
    )
    md = (build_report(exp)["md"]).read_text()
    assert "Student t intervals" in md and "BCa" not in md.split("## Figures")[0]
    assert "| paired, paired t |" in md


def test_the_main_effects_figure_draws_every_run_under_the_intervals(tmp_path):
    from matplotlib.collections import PathCollection

    from keras_ablate.analysis import simulate
    from keras_ablate.analysis.tables import load
    from keras_ablate.report import plots

    exp = tmp_path / "s"
    grid = {"architecture": ["rnn", "lstm"], "activation": ["tanh", "relu"]}
    simulate.write_experiment(exp, grid, seeds=3, epochs=2, steps_per_epoch=2, seed=1)
    tables = load(exp)
    figure = plots.main_effects(tables)
    finite = int(np.isfinite(tables.runs["score"].to_numpy(dtype=float)).sum())
    for ax in figure.axes:
        points = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert sum(len(c.get_offsets()) for c in points) == finite


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("final/test/accuracy", (0.0, 1.0)),
        ("reached_target", (0.0, 1.0)),
        ("final/test/mse", (0.0, math.inf)),
        ("final/val/mae", (0.0, math.inf)),
        ("final/val/loss", (0.0, math.inf)),
        ("loss_ratio", None),
        ("gap/accuracy", (-1.0, 1.0)),
        ("gap/loss", None),
        ("min/grad/cosine", (-1.0, 1.0)),
        ("cosine_clipped", (-1.0, 1.0)),
        ("init/grad/depth_ratio", None),
    ],
)
def test_metric_ranges_bound_errors_and_fractions(name, expected):
    assert scoring.metric_range(name) == expected


def test_an_error_metrics_interval_never_goes_below_zero():
    # Three runs, one far off: the t interval of the mean would reach below 0 (as claim 5's
    # adding task showed for a Glorot RNN's test MSE); an MSE cannot.
    values = [0.01, 0.02, 0.25]
    low, _ = S.mean_interval(values)
    assert low < 0
    estimate = S.mean_estimate(values, S.IntervalSpec(), scoring.metric_range("final/test/mse"))
    assert estimate.low == 0.0 and estimate.clipped


def test_holm_gives_statsmodels_decisions_and_adjusted_p_values():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(1)
    for _ in range(6):  # multipletests is slow (~0.1-1 s a call): a few mixed families
        m = int(rng.integers(3, 12))
        p = rng.uniform(0, 0.1, m) ** rng.uniform(0.5, 2)
        p[rng.random(m) < 0.2] = np.nan
        if rng.random() < 0.3:
            p = np.round(p, 2)  # ties
        reject, adjusted = S.holm(p, 0.05)
        finite = np.isfinite(p)
        assert not reject[~finite].any() and np.isnan(adjusted[~finite]).all()
        if finite.any():
            want_reject, want_adjusted, _, _ = multipletests(p[finite], alpha=0.05, method="holm")
            np.testing.assert_array_equal(reject[finite], want_reject)
            np.testing.assert_allclose(adjusted[finite], want_adjusted)


def test_pairwise_compares_every_pair_of_a_3_level_axis_with_holm_across_the_pairs(tmp_path):
    from keras_ablate.analysis import simulate
    from keras_ablate.analysis.tables import load

    exp = tmp_path / "p"
    grid = {"activation": ["tanh", "relu", "elu"], "clip": ["none", "norm:1.0"]}
    effect = {"tanh": 0.7, "relu": 0.75, "elu": 0.9}
    simulate.write_experiment(
        exp, grid, seeds=3, epochs=2, steps_per_epoch=2, seed=2, noise=0.03,
        effect=lambda axes: effect[axes["activation"]], divergence=lambda axes: 0.0,
    )  # fmt: skip
    tables = load(exp)
    pairs = effects.pairwise(tables)
    # The 2-level clip axis has its one pair in the main table; activation has 3 pairs.
    assert [(r["a"], r["b"]) for r in pairs.to_dict("records")] == [
        ("tanh", "relu"), ("tanh", "elu"), ("relu", "elu")
    ]  # fmt: skip
    runs = tables.runs.sort_values(["clip", "seed"])
    p_values = []
    for r in pairs.to_dict("records"):
        a = runs[runs["activation"] == r["a"]]["score"].to_numpy()
        b = runs[runs["activation"] == r["b"]]["score"].to_numpy()
        assert r["diff"] == pytest.approx(a.mean() - b.mean())
        assert r["diff_method"] == "paired" and r["diff_n"] == 6
        assert r["p_value"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
        assert r["p_better"] == pytest.approx(np.mean(a > b) + 0.5 * np.mean(a == b))
        p_values.append(r["p_value"])
    order = np.argsort(p_values)
    by_hand = np.maximum.accumulate(np.minimum(1, (3 - np.arange(3)) * np.sort(p_values)))
    np.testing.assert_allclose(pairs["p_holm"].to_numpy()[order], by_hand)
    assert pairs.attrs["family"] == 3
