"""analysis.effects on hand-built run tables: every number against scipy, statsmodels or a hand count.

The Tables here are built by hand (no training, no results folder): each test is a few
milliseconds, so the mutation run (docs/MUTATION.md) can run them once per mutant.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from keras_ablate.analysis import effects
from keras_ablate.analysis.stats import IntervalSpec
from keras_ablate.analysis.tables import Tables

T = IntervalSpec("t")
Z_POWER = sps.norm.ppf(0.8)


def _z(alpha: float) -> float:
    return sps.norm.ppf(1 - alpha / 2) + Z_POWER


def _tables(runs: pd.DataFrame, axes: list[str], info: dict | None = None) -> Tables:
    """A Tables of `runs` (score, status, seed and the axes); no arm is flagged (budget empty)."""
    levels = {a: list(dict.fromkeys(runs[a])) for a in axes}
    runs = runs.assign(**{a: pd.Categorical(runs[a], levels[a]) for a in axes})  # as load does
    budget = pd.DataFrame({**{a: [] for a in axes}, "did_not_learn": pd.Series([], dtype=bool)})
    return Tables(
        runs=runs,
        history=pd.DataFrame(),
        steps=pd.DataFrame(),
        axes=axes,
        levels=levels,
        info={"analysis": {"interval": "t"}, **(info or {})},
        budget=budget,
    )


def _grid(scores: dict, status: dict | None = None) -> pd.DataFrame:
    """(arch, clip) -> per-seed scores as a run table."""
    rows = []
    for (arch, clip), values in scores.items():
        for seed, v in enumerate(values):
            rows.append(
                {
                    "arch": arch,
                    "clip": clip,
                    "seed": seed,
                    "score": v,
                    "status": (status or {}).get((arch, clip, seed), "ok"),
                }
            )
    return pd.DataFrame(rows)


SCORES = {
    ("rnn", "none"): (0.50, 0.55, 0.61, 0.52),
    ("rnn", "norm"): (0.60, 0.62, 0.70, 0.66),
    ("lstm", "none"): (0.70, 0.64, 0.73, 0.69),
    ("lstm", "norm"): (0.75, 0.72, 0.80, 0.74),
    ("gru", "none"): (0.66, 0.63, 0.71, 0.65),
    ("gru", "norm"): (0.69, 0.70, 0.77, 0.68),
}


def _pairs(level: str, reference: str):
    """The paired differences level - reference of arch, matched by (clip, seed), as by hand."""
    a = [v for c in ("none", "norm") for v in SCORES[(level, c)]]
    b = [v for c in ("none", "norm") for v in SCORES[(reference, c)]]
    return np.array(a), np.array(b)


# ---------------------------------------------------------------- difference and samples


def test_a_paired_difference_matches_scipys_paired_t_and_counts_pairs_per_seed():
    runs = _grid(SCORES)
    row = effects.difference(runs, ["arch", "clip"], "arch", "lstm", "rnn", "score", T, (0, 1))
    a, b = _pairs("lstm", "rnn")
    d = a - b
    half = sps.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    assert row["diff"] == pytest.approx(d.mean())
    assert (row["diff_low"], row["diff_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert row["diff_n"] == 8 and row["diff_method"] == "paired"
    assert row["diff_interval"] == "paired t" and row["diff_clipped"] is False
    assert row["p_value"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert row["diff_sd"] == pytest.approx(d.std(ddof=1))
    assert row["diff_per_seed"] == 2.0  # two clip levels: two pairs per seed
    # P(lstm better): every pair but none is a win (hand count), interval around it.
    wins = np.mean((d > 0) + 0.5 * (d == 0))
    assert row["p_better"] == pytest.approx(wins)
    assert row["p_better_low"] <= row["p_better"] <= row["p_better_high"] <= 1


def test_an_unpaired_difference_is_welch_and_its_interval_is_cut_to_the_difference_range():
    runs = pd.DataFrame(
        {
            "a": ["x", "x", "y", "y"],
            "seed": [0, 1, 2, 3],  # no seed in common: no pairs
            "score": [0.0, 0.3, 1.0, 0.9],
            "status": "ok",
        }
    )
    row = effects.difference(runs, ["a"], "a", "y", "x", "score", T, (0.0, 1.0))
    a, b = np.array([1.0, 0.9]), np.array([0.0, 0.3])
    va, vb = a.var(ddof=1) / 2, b.var(ddof=1) / 2
    dof = (va + vb) ** 2 / (va**2 + vb**2)  # n - 1 = 1 for both
    half = sps.t.ppf(0.975, dof) * math.sqrt(va + vb)
    diff = a.mean() - b.mean()
    assert diff + half > 1  # the raw Welch interval leaves [-1, 1] ...
    assert row["diff"] == pytest.approx(diff)
    assert row["diff_low"] == pytest.approx(diff - half)
    assert row["diff_high"] == 1.0 and row["diff_clipped"] is True  # ... and is cut to it
    assert row["diff_method"] == "welch" and row["diff_interval"] == "welch"
    assert row["p_value"] == pytest.approx(sps.ttest_ind(a, b, equal_var=False).pvalue)
    assert row["diff_sd"] == pytest.approx(math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2))
    assert row["diff_n"] == 4 and row["diff_per_seed"] == 1.0
    assert row["p_better"] == 1.0  # every y beats every x
    # Without bounds the same interval is not cut.
    free = effects.difference(runs, ["a"], "a", "y", "x", "score", T)
    assert free["diff_high"] == pytest.approx(diff + half) and free["diff_clipped"] is False
    # With a bootstrap spec the unpaired method is named so (Welch below 5 runs a group).
    boot = effects.difference(runs, ["a"], "a", "y", "x", "score", IntervalSpec(), (0.0, 1.0))
    assert boot["diff_method"] == "unpaired" and boot["diff_interval"] == "welch (n<5)"


def test_p_better_follows_the_direction_of_the_metric():
    runs = pd.DataFrame(
        {"a": ["x", "y"] * 3, "seed": [0, 0, 1, 1, 2, 2], "score": [1.0, 0.5, 2.0, 1.0, 3.0, 2.9]}
    )
    higher = effects.difference(runs, ["a"], "a", "y", "x", "score", T, None)
    lower = effects.difference(runs, ["a"], "a", "y", "x", "score", T, None, False)
    assert higher["p_better"] == 0.0 and lower["p_better"] == 1.0  # y is always lower
    assert higher["diff"] == lower["diff"] == pytest.approx((-0.5 - 1.0 - 0.1) / 3)


def test_the_reference_row_and_a_level_without_runs():
    runs = _grid(SCORES)
    ref = effects.difference(runs, ["arch", "clip"], "arch", "rnn", "rnn", "score")
    assert ref["diff"] == 0.0 and ref["diff_method"] == "reference"
    assert ref["diff_n"] == 0 and ref["diff_interval"] == "" and ref["diff_clipped"] is False
    for key in ("diff_low", "diff_high", "p_better", "p_better_low", "p_better_high"):
        assert math.isnan(ref[key]), key
    for key in ("p_value", "diff_sd", "diff_per_seed"):
        assert math.isnan(ref[key]), key
    # A numeric level equal to the reference as text is the reference.
    assert (
        effects.difference(runs, ["arch"], "arch", 1.0, "1", "score")["diff_method"] == "reference"
    )
    none = effects.difference(runs, ["arch", "clip"], "arch", "cnn", "rnn", "score")
    assert none["diff_n"] == 0 and none["diff_method"] == "" and none["diff_clipped"] is False
    assert none["diff_interval"] == ""
    expected_nan = (
        "diff diff_low diff_high p_better p_better_low p_better_high p_value diff_sd diff_per_seed"
    )
    assert sorted(none) == sorted([*expected_nan.split(), "diff_n", "diff_method", "diff_interval",
                                   "diff_clipped"])  # fmt: skip
    assert all(math.isnan(none[k]) for k in expected_nan.split())


def test_samples_pair_by_the_other_axes_and_seed_and_leave_out_non_finite_values():
    runs = _grid(SCORES)
    runs.loc[(runs["arch"] == "lstm") & (runs["clip"] == "norm") & (runs["seed"] == 3), "score"] = (
        np.nan
    )
    a, b, paired, sd, per_seed, n = effects.samples(runs, ["arch", "clip"], "arch", "lstm", "rnn",
                                                    "score")  # fmt: skip
    assert paired and n == 7  # the NaN run's pair is dropped
    assert per_seed == pytest.approx(7 / 4)
    ea = [0.70, 0.64, 0.73, 0.69, 0.75, 0.72, 0.80]
    eb = [0.50, 0.55, 0.61, 0.52, 0.60, 0.62, 0.70]
    assert sorted(a) == pytest.approx(sorted(ea)) and sorted(b) == pytest.approx(sorted(eb))
    assert sorted(a - b) == pytest.approx(sorted(np.subtract(ea, eb)))
    assert sd == pytest.approx(np.std(np.subtract(ea, eb), ddof=1))
    # One matched pair only: two independent groups, with the pooled sd and runs per seed.
    one = pd.DataFrame(
        {
            "a": ["x", "x", "x", "y", "y"],
            "seed": [0, 1, 1, 0, 5],
            "score": [1.0, 2.0, 4.0, 3.0, 6.0],
        }
    )
    a, b, paired, sd, per_seed, n = effects.samples(one, ["a"], "a", "y", "x", "score")
    assert not paired and n == 5
    assert sd == pytest.approx(math.sqrt((np.var([3, 6], ddof=1) + np.var([1, 2, 4], ddof=1)) / 2))
    assert per_seed == 1.0  # y: 2 runs / 2 seeds; x: 3 runs / 2 seeds = 1.5; the smaller
    single = one[one["a"] == "x"].assign(a=["x", "x", "y"]).iloc[[0, 2]]
    assert math.isnan(effects.samples(single, ["a"], "a", "y", "x", "score")[3])
    assert effects.samples(one, ["a"], "a", "z", "x", "score") is None
    assert effects.samples(one.assign(score=np.inf), ["a"], "a", "y", "x", "score") is None


# ---------------------------------------------------------------- decide and seeds


def _table(rows: list[dict]) -> pd.DataFrame:
    base = {"diff": 0.05, "diff_sd": 0.1, "diff_method": "paired", "diff_per_seed": 1.0}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_decide_is_holm_at_the_given_alpha_and_seeds_use_the_strictest_level():
    p = [0.003, 0.03, 0.2, math.nan]
    table = _table([{"p_value": v} for v in p])
    effects.decide(table, min_effect=0.1, alpha=0.05)
    reject, adjusted, _, _ = multipletests(p[:3], alpha=0.05, method="holm")
    assert table["p_holm"].iloc[:3].tolist() == pytest.approx(adjusted.tolist())
    assert table["resolved"].tolist() == [*reject.tolist(), False] == [True, False, False, False]
    assert math.isnan(table["p_holm"].iloc[3])
    assert table.attrs == {"family": 3, "alpha": 0.05}
    strict = 0.05 / 3
    n = math.ceil((_z(strict) * 0.1 / 0.05) ** 2)  # paired: sd of differences / effect
    n_min = math.ceil((_z(strict) * 0.1 / 0.1) ** 2)
    assert math.isnan(table["seeds_needed"].iloc[0])  # resolved: nothing more needed
    assert table["seeds_needed"].iloc[1:3].tolist() == [n, n]
    assert table["seeds_needed_min"].iloc[1:3].tolist() == [n_min, n_min]
    assert math.isnan(table["seeds_needed"].iloc[3]) and math.isnan(
        table["seeds_needed_min"].iloc[3]
    )
    # A stricter alpha resolves less and needs more seeds.
    strict_table = _table([{"p_value": v} for v in (0.004, 0.03, 0.2, math.nan)])
    effects.decide(strict_table, alpha=0.01)
    assert strict_table["resolved"].tolist() == [False] * 4  # 3 x 0.004 = 0.012 > 0.01
    assert strict_table.attrs["alpha"] == 0.01
    assert strict_table["seeds_needed"].iloc[1] == math.ceil((_z(0.01 / 3) * 0.1 / 0.05) ** 2)
    assert strict_table["seeds_needed"].iloc[1] > n
    assert strict_table["seeds_needed_min"].isna().all()  # no min_effect given


def test_seeds_needed_divide_by_pairs_per_seed_and_double_for_two_groups():
    rows = [
        {"p_value": 0.5, "diff_per_seed": 3.0},
        {"p_value": 0.5, "diff_method": "welch", "diff_per_seed": 0.5},  # at least one a seed
        {"p_value": 0.5, "diff_sd": math.nan},
        {"p_value": 0.5, "diff": -0.05, "diff_method": "unpaired"},
    ]
    table = _table(rows)
    effects.decide(table)
    alpha = 0.05 / 4
    paired = math.ceil((_z(alpha) * 0.1 / 0.05) ** 2)
    unpaired = math.ceil(2 * (_z(alpha) * 0.1 / 0.05) ** 2)
    assert table["seeds_needed"].iloc[0] == math.ceil(paired / 3)
    assert table["seeds_needed"].iloc[1] == unpaired  # per seed 0.5 counts as 1
    assert math.isnan(table["seeds_needed"].iloc[2])  # no sd: unknown
    assert table["seeds_needed"].iloc[3] == unpaired  # the size of a negative difference
    zero = _table([{"p_value": 0.5, "diff": 0.0}])
    effects.decide(zero)
    assert math.isnan(zero["seeds_needed"].iloc[0])  # no observed effect: no number


def test_decision_alpha_is_the_adaptive_per_look_level_when_recorded():
    runs = _grid(SCORES)
    assert effects.decision_alpha(_tables(runs, ["arch", "clip"])) == 0.05
    adaptive = _tables(runs, ["arch", "clip"], {"adaptive": {"alpha_per_look": 0.0123}})
    assert effects.decision_alpha(adaptive) == 0.0123
    table = effects.main_effects(adaptive)
    assert table.attrs["alpha"] == 0.0123


# ---------------------------------------------------------------- tables


def test_main_effects_rows_against_scipy_and_holm_over_the_whole_table():
    runs = _grid(SCORES)
    tables = _tables(runs, ["arch", "clip"], {"derived": {"metric": "val/accuracy"}})
    table = effects.main_effects(tables).set_index(["axis", "level"])
    assert list(table.index) == [("arch", "rnn"), ("arch", "lstm"), ("arch", "gru"),
                                 ("clip", "none"), ("clip", "norm")]  # fmt: skip
    assert (table["reference"] == ["rnn"] * 3 + ["none"] * 2).all()
    p = {}
    for level in ("lstm", "gru"):
        a, b = _pairs(level, "rnn")
        p[("arch", level)] = sps.ttest_rel(a, b).pvalue
        row = table.loc[("arch", level)]
        assert row["diff"] == pytest.approx((a - b).mean())
        assert row["mean"] == pytest.approx(a.mean())
        assert row["n_runs"] == 8 and row["n_finished"] == 8 and row["n_diverged"] == 0
        d = a - b  # higher is better (the default): the share of pairs the level wins
        assert row["p_better"] == pytest.approx(np.mean((d > 0) + 0.5 * (d == 0)))
    norm = [v for arch in ("rnn", "lstm", "gru") for v in SCORES[(arch, "norm")]]
    plain = [v for arch in ("rnn", "lstm", "gru") for v in SCORES[(arch, "none")]]
    p[("clip", "norm")] = sps.ttest_rel(norm, plain).pvalue
    _, adjusted, _, _ = multipletests(list(p.values()), method="holm")
    for key, value in zip(p, adjusted, strict=True):
        assert table.loc[key, "p_value"] == pytest.approx(p[key])
        assert table.loc[key, "p_holm"] == pytest.approx(value)
    assert table.loc[("arch", "rnn"), "diff"] == 0.0
    assert table.loc[("arch", "rnn"), "diff_method"] == "reference"
    assert table.attrs["family"] == 3
    assert (table["n_flagged"] == 0).all() and (table["budget_note"] == "").all()
    # The marginal interval is the t interval of the level's 8 runs, cut to [0, 1].
    lstm = np.array([v for c in ("none", "norm") for v in SCORES[("lstm", c)]])
    half = sps.t.ppf(0.975, 7) * lstm.std(ddof=1) / math.sqrt(8)
    assert table.loc[("arch", "lstm"), "ci_low"] == pytest.approx(lstm.mean() - half)
    assert table.loc[("arch", "lstm"), "ci_high"] == pytest.approx(lstm.mean() + half)


def test_a_yaml_reference_level_is_used_when_present_and_numbers_match_as_numbers():
    runs = _grid(SCORES)
    tables = _tables(runs, ["arch", "clip"], {"reference": {"arch": "gru", "clip": "absent"}})
    assert effects.reference_levels(tables) == {"arch": "gru", "clip": "none"}
    numeric = pd.DataFrame({"lr": [0.1, 0.01, 0.1, 0.01], "seed": [0, 0, 1, 1], "score": 0.5})
    num = _tables(numeric, ["lr"], {"reference": {"lr": "0.01"}})
    assert effects.reference_levels(num) == {"lr": 0.01}
    table = effects.main_effects(tables).set_index(["axis", "level"])
    assert table.loc[("arch", "gru"), "diff_method"] == "reference"
    a, b = _pairs("rnn", "gru")
    assert table.loc[("arch", "rnn"), "diff"] == pytest.approx((a - b).mean())


def test_counts_and_divergence_rate_per_level():
    status = {("rnn", "none", 0): "diverged", ("rnn", "none", 1): "failed",
              ("rnn", "norm", 2): "diverged"}  # fmt: skip
    runs = _grid(SCORES, status)
    out = effects.counts(runs, ["arch"]).set_index("arch")
    assert out.loc["rnn", "n_runs"] == 8 and out.loc["rnn", "n_finished"] == 7
    assert out.loc["rnn", "n_diverged"] == 2 and out.loc["rnn", "n_failed"] == 1
    assert out.loc["rnn", "divergence_rate"] == pytest.approx(2 / 7)
    assert out.loc["lstm", "divergence_rate"] == 0.0
    all_failed = runs.assign(status="failed")
    assert math.isnan(effects.counts(all_failed, ["arch"])["divergence_rate"].iloc[0])


def test_pairwise_covers_every_pair_of_a_three_level_axis_with_holm_across_the_pairs():
    runs = _grid(SCORES)
    table = effects.pairwise(_tables(runs, ["arch", "clip"]))
    assert list(zip(table["a"], table["b"], strict=True)) == [
        ("rnn", "lstm"), ("rnn", "gru"), ("lstm", "gru")
    ]  # fmt: skip
    p = [sps.ttest_rel(*_pairs(a, b)).pvalue for a, b in zip(table["a"], table["b"], strict=True)]
    assert table["p_value"].tolist() == pytest.approx(p)
    assert table["p_holm"].tolist() == pytest.approx(multipletests(p, method="holm")[1].tolist())
    assert table.attrs["family"] == 3 and "Student t" in table.attrs["interval"]
    assert effects.pairwise(_tables(runs, ["arch", "clip"]), max_levels=2).empty


def test_reference_tests_give_the_p_values_and_differences_without_intervals():
    runs = _grid(SCORES)
    out = effects.reference_tests(_tables(runs, ["arch", "clip"])).set_index(["axis", "level"])
    assert list(out.index) == [("arch", "lstm"), ("arch", "gru"), ("clip", "norm")]
    a, b = _pairs("gru", "rnn")
    assert out.loc[("arch", "gru"), "p_value"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert out.loc[("arch", "gru"), "diff"] == pytest.approx((a - b).mean())
    assert out.loc[("arch", "gru"), "n"] == 8 and out.loc[("arch", "gru"), "reference"] == "rnn"
    lonely = runs[~((runs["arch"] == "gru") & (runs["clip"] == "none"))]
    lonely = lonely[~((lonely["arch"] == "gru") & (lonely["seed"] > 0))]
    out = effects.reference_tests(_tables(lonely, ["arch", "clip"])).set_index(["axis", "level"])
    assert math.isnan(out.loc[("arch", "gru"), "p_value"])  # one run: Welch needs two
    empty = effects.reference_tests(_tables(runs.iloc[0:0], ["arch"]))
    assert list(empty.columns) == ["axis", "level", "reference", "diff", "p_value", "n"]


def test_interactions_are_cell_means_with_counts():
    status = {("lstm", "norm", 1): "diverged"}
    runs = _grid(SCORES, status)
    cells = effects.interactions(_tables(runs, ["arch", "clip"]))[("arch", "clip")]
    cell = cells.set_index(["arch", "clip"]).loc[("lstm", "norm")]
    assert cell["mean"] == pytest.approx(np.mean(SCORES[("lstm", "norm")]))
    assert cell["n_runs"] == 4 and cell["n_diverged"] == 1 and cell["n_flagged"] == 0
    assert cell["divergence_rate"] == pytest.approx(0.25)
    assert len(cells) == 6


def test_anova_partial_eta_squared_from_statsmodels_sums_of_squares():
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    runs = _grid(SCORES)
    table, note = effects.anova(_tables(runs, ["arch", "clip"]))
    model = smf.ols("score ~ C(arch) * C(clip)", data=runs).fit()
    ref = anova_lm(model, typ=2)
    eta = ref["sum_sq"] / (ref["sum_sq"] + ref.loc["Residual", "sum_sq"])
    got = table.set_index("term")
    assert got.loc["arch", "partial_eta_sq"] == pytest.approx(eta["C(arch)"])
    assert got.loc["arch x clip", "p_value"] == pytest.approx(ref.loc["C(arch):C(clip)", "PR(>F)"])
    assert math.isnan(got.loc["Residual", "partial_eta_sq"])
    assert note == "type II sums of squares, main effects and two-way interactions; 24 runs, " \
        "18 residual degrees of freedom"  # fmt: skip
    # One seed per cell: no residual df with the interaction, so main effects only.
    one = runs[runs["seed"] == 0]
    table, note = effects.anova(_tables(one, ["arch", "clip"]))
    assert "main effects only" in note and "2 residual" in note
    assert "arch x clip" not in set(table["term"])
    # One axis left with a run per level: no residual df at all.
    none_left = effects.anova(_tables(one[one["clip"] == "none"], ["arch", "clip"]))
    assert none_left[0] is None and none_left[1] == "no residual degrees of freedom: add seeds"
    flat = effects.anova(_tables(one.assign(arch="x", clip="y"), ["arch", "clip"]))
    assert flat[0] is None and flat[1] == "no axis has two levels among the finished runs"


# ---------------------------------------------------------------- settings reach every table


def _wide() -> pd.DataFrame:
    """Axis a with levels x, y, z (3 seeds); y - x has a t interval past 1 (cut to [-1, 1])."""
    scores = {"x": (0.0, 0.0, 0.3), "y": (1.0, 0.4, 1.0), "z": (0.5, 0.6, 0.9)}
    rows = [
        {"a": level, "seed": seed, "score": v, "status": "ok"}
        for level, values in scores.items()
        for seed, v in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_the_interval_kind_bounds_and_resamples_of_the_experiment_reach_every_table():
    info = {
        "analysis": {"interval": "t", "resamples": 500},
        "derived": {"metric": "val/accuracy", "higher_is_better": True},
    }
    tables = _tables(_wide(), ["a"], info)
    d = np.array([1.0, 0.4, 0.7])  # y - x per seed
    high = d.mean() + sps.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert high > 1
    main = effects.main_effects(tables).set_index("level")
    assert main.loc["y", "diff_high"] == 1.0 and main.loc["y", "diff_clipped"]
    assert main.loc["y", "diff_interval"] == "paired t" and main.loc["y", "interval"] == "t"
    assert main.attrs["resamples"] == 500 and main.attrs["interval"].startswith("95 % Student t")
    y = np.array([1.0, 0.4, 1.0])
    assert main.loc["y", "ci_high"] == 1.0 and main.loc["y", "clipped"]  # t interval past 1
    assert y.mean() + sps.t.ppf(0.975, 2) * y.std(ddof=1) / math.sqrt(3) > 1
    pairs = effects.pairwise(tables).set_index(["a", "b"])
    assert pairs.loc[("x", "y"), "diff_low"] == -1.0 and pairs.loc[("x", "y"), "diff_clipped"]
    assert pairs.loc[("x", "y"), "diff_interval"] == "paired t"
    assert pairs.attrs["resamples"] == 500
    config = effects.by_configuration(tables, ["score"]).set_index("a")
    assert config.loc["y", "ci_high"] == 1.0 and config.loc["y", "interval"] == "t"
    # The default interval (bootstrap) where the experiment names none: below 5 runs, t (n<5).
    default = _tables(_wide(), ["a"], {"analysis": {}})
    default.info["analysis"] = {}
    boot = effects.main_effects(default).set_index("level")
    assert (
        boot.loc["y", "interval"] == "t (n<5)"
        and boot.loc["y", "diff_interval"] == "paired t (n<5)"
    )
    assert boot.attrs["resamples"] == 2000 and "bootstrap" in boot.attrs["interval"]


def test_interaction_cells_use_the_experiments_interval_and_range():
    runs = _grid(
        {
            ("a", "p"): (0.9, 1.0, 0.95, 1.0),
            ("a", "q"): (0.5, 0.6, 0.55, 0.5),
            ("b", "p"): (0.7, 0.72, 0.8, 0.75),
            ("b", "q"): (0.3, 0.1, 0.2, 0.25),
        }
    )
    info = {"derived": {"metric": "val/accuracy"}}
    cells = effects.interactions(_tables(runs, ["arch", "clip"], info))[("arch", "clip")]
    cell = cells.set_index(["arch", "clip"]).loc[("a", "p")]
    x = np.array([0.9, 1.0, 0.95, 1.0])
    assert x.mean() + sps.t.ppf(0.975, 3) * x.std(ddof=1) / 2 > 1
    assert cell["ci_high"] == 1.0 and cell["clipped"] and cell["interval"] == "t"
    assert list(cells.columns) == ["arch", "clip", "n_runs", "n_finished", "n_diverged",
                                   "n_failed", "divergence_rate", "n", "mean", "std",
                                   "ci_low", "ci_high", "iqm", "interval", "clipped",
                                   "n_flagged"]  # fmt: skip


def test_a_lower_is_better_metric_turns_p_better_around_in_every_table():
    info = {"derived": {"metric": "val/loss", "higher_is_better": False}}
    tables = _tables(_wide(), ["a"], info)
    main = effects.main_effects(tables).set_index("level")
    assert main.loc["y", "p_better"] == 0.0  # y's loss is higher on every seed: never better
    pairs = effects.pairwise(tables).set_index(["a", "b"])
    assert pairs.loc[("x", "y"), "p_better"] == 1.0
    # A loss has no upper bound: the interval past 1 is not cut.
    assert main.loc["y", "diff_high"] > 1 and not main.loc["y", "diff_clipped"]


def test_min_effect_and_the_adaptive_alpha_reach_main_effects_and_pairwise():
    info = {"analysis": {"interval": "t", "min_effect": 0.2}, "adaptive": {"alpha_per_look": 0.01}}
    tables = _tables(_wide(), ["a"], info)
    for table in (effects.main_effects(tables), effects.pairwise(tables)):
        assert table.attrs["alpha"] == 0.01
        family = table.attrs["family"]
        open_ = table[~table["resolved"] & table["p_value"].notna()]
        assert len(open_)
        for row in open_.to_dict("records"):
            n = math.ceil((_z(0.01 / family) * row["diff_sd"] / 0.2) ** 2)  # paired
            assert row["seeds_needed_min"] == max(2, n)


def test_the_table_columns_are_exactly_the_documented_ones():
    tables = _tables(_grid(SCORES), ["arch", "clip"])
    diff = ["diff", "diff_low", "diff_high", "diff_n", "diff_method", "diff_interval",
            "diff_clipped", "p_better", "p_better_low", "p_better_high", "p_value", "diff_sd",
            "diff_per_seed", "p_holm", "resolved", "seeds_needed", "seeds_needed_min"]  # fmt: skip
    main = effects.main_effects(tables)
    assert list(main.columns) == ["axis", "level", "reference", "n_runs", "n_finished",
                                  "n_diverged", "n_failed", "divergence_rate", "n", "mean", "std",
                                  "ci_low", "ci_high", "iqm", "interval", "clipped", *diff,
                                  "n_flagged", "budget_note"]  # fmt: skip
    assert main["level"].dtype == object and main["reference"].dtype == object
    pairs = effects.pairwise(tables)
    assert list(pairs.columns) == ["axis", "a", "b", *diff]
    assert pairs["a"].dtype == object and pairs["b"].dtype == object


def test_a_missing_value_column_gives_empty_tables_not_an_error():
    tables = _tables(_grid(SCORES), ["arch", "clip"])
    assert effects.main_effects(tables, "nope").empty
    assert effects.pairwise(tables, "nope").empty
    assert effects.interactions(tables, "nope") == {}
    assert effects.anova(tables, "nope") == (None, "no finished runs")
    assert effects.by_configuration(tables, ["nope"]).empty
    out = effects.reference_tests(tables, "nope")
    assert out.empty and list(out.columns) == ["axis", "level", "reference", "diff", "p_value", "n"]
    no_axes = effects.reference_tests(_tables(_grid(SCORES), []))
    assert no_axes.empty and list(no_axes.columns) == list(out.columns)


def test_reference_tests_of_a_level_without_runs_count_zero():
    tables = _tables(_grid(SCORES), ["arch", "clip"])
    tables.levels["arch"] = ["rnn", "lstm", "gru", "cnn"]
    out = effects.reference_tests(tables).set_index(["axis", "level"])
    assert out.loc[("arch", "cnn"), "n"] == 0 and math.isnan(out.loc[("arch", "cnn"), "p_value"])


def test_pairwise_skips_two_level_axes_and_includes_an_axis_at_max_levels():
    runs = _grid(SCORES)
    # clip (2 levels) comes first and is skipped; arch (3 levels) is still compared.
    tables = _tables(runs, ["clip", "arch"])
    table = effects.pairwise(tables, max_levels=3)
    assert set(table["axis"]) == {"arch"} and len(table) == 3


def test_counts_leave_out_unused_categories_and_rate_a_single_finished_run():
    runs = _grid({("rnn", "none"): (0.5, 0.6), ("lstm", "none"): (0.7, 0.8)},
                 {("rnn", "none", 0): "failed", ("rnn", "none", 1): "diverged"})  # fmt: skip
    runs["arch"] = pd.Categorical(runs["arch"], ["rnn", "lstm", "cnn"])
    out = effects.counts(runs, ["arch"]).set_index("arch")
    assert list(out.index) == ["rnn", "lstm"]
    assert out.loc["rnn", "n_finished"] == 1 and out.loc["rnn", "divergence_rate"] == 1.0


def test_budget_notes_name_the_flagged_arms_of_the_level_and_its_reference():
    runs = _grid(SCORES)
    tables = _tables(runs, ["arch", "clip"])
    flagged = [("rnn", "none"), ("rnn", "norm"), ("gru", "none"), ("gru", "norm")]
    tables.budget = pd.DataFrame(
        {
            "arch": [a for a, _ in flagged] + ["lstm", "lstm"],
            "clip": [c for _, c in flagged] + ["none", "norm"],
            "did_not_learn": [True] * 4 + [False, False],
        }
    )
    main = effects.main_effects(tables).set_index(["axis", "level"])
    lstm = main.loc[("arch", "lstm")]  # lstm vs rnn: rnn's two arms
    assert lstm["n_flagged"] == 2
    assert lstm["budget_note"] == (
        "† may be budget- or rate-limited: 2 arm(s) involved did not learn within budget "
        "(arch=rnn, clip=none; arch=rnn, clip=norm)"
    )
    assert main.loc[("arch", "rnn"), "n_flagged"] == 2  # the reference row: its own arms
    assert main.loc[("arch", "gru"), "n_flagged"] == 4  # gru and its reference rnn
    assert main.loc[("arch", "gru"), "budget_note"].endswith(
        "(arch=rnn, clip=none; arch=rnn, clip=norm; arch=gru, clip=none; and 1 more: see Budgets)"
    )
    # Three arms are named without "more".
    tables.budget.loc[3, "did_not_learn"] = False
    three = effects.main_effects(tables).set_index(["axis", "level"]).loc[("arch", "gru")]
    assert three["n_flagged"] == 3 and three["budget_note"].endswith("arch=gru, clip=none)")
    cells = effects.interactions(tables)[("arch", "clip")].set_index(["arch", "clip"])
    assert (
        cells.loc[("rnn", "none"), "n_flagged"] == 1
        and cells.loc[("lstm", "none"), "n_flagged"] == 0
    )


def test_samples_pair_from_two_pairs_and_count_runs_per_seed_on_each_side():
    two = pd.DataFrame(
        {
            "a": ["x", "y", "x", "y"],
            "o": ["p", "p", "q", "q"],
            "seed": 0,
            "score": [1.0, 2.0, 1.5, 2.5],
        }
    )
    a, b, paired, sd, per_seed, n = effects.samples(two, ["a", "o"], "a", "y", "x", "score")
    assert paired and n == 2 and per_seed == 2.0  # two pairs from one seed
    # Unpaired: y has 3 runs of seed 0, x 2 runs of seed 5 (one seed each): min(3, 2).
    one_seed = pd.DataFrame(
        {"a": ["y", "y", "y", "x", "x"], "o": ["p", "q", "r", "p", "q"],
         "seed": [0, 0, 0, 5, 5], "score": [1.0, 2.0, 3.0, 0.0, 1.0]}
    )  # fmt: skip
    assert effects.samples(one_seed, ["a", "o"], "a", "y", "x", "score")[4] == 2.0
    # x's 2 runs from 2 seeds: one run per seed on that side, so 1.
    two_seeds = one_seed.assign(seed=[0, 0, 0, 5, 6])
    assert effects.samples(two_seeds, ["a", "o"], "a", "y", "x", "score")[4] == 1.0


@pytest.mark.filterwarnings("ignore::statsmodels.tools.sm_exceptions.SingularMatrixWarning")
def test_anova_keeps_the_interactions_with_one_residual_df_and_is_type_ii():
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    def runs_of(cells):
        return pd.DataFrame(
            [{"f": f, "g": g, "seed": s, "score": v, "status": "ok"} for f, g, s, v in cells]
        )

    five = runs_of([("a", "p", 0, 1.0), ("a", "q", 0, 2.0), ("b", "p", 0, 3.0),
                    ("b", "q", 0, 5.0), ("b", "q", 1, 5.5)])  # fmt: skip
    table, note = effects.anova(_tables(five, ["f", "g"]))
    assert note.endswith(
        "main effects and two-way interactions; 5 runs, 1 residual degrees of freedom"
    )
    four = five.iloc[:4]
    table, note = effects.anova(_tables(four, ["f", "g"]))
    assert note.endswith("main effects only; 4 runs, 1 residual degrees of freedom")
    three = five.iloc[:3]
    assert effects.anova(_tables(three, ["f", "g"])) == (
        None,
        "no residual degrees of freedom: add seeds",
    )
    # max_axes: two axes at max_axes=2 still interact; at 1 they do not.
    assert "interactions" in effects.anova(_tables(five, ["f", "g"]), max_axes=2)[1]
    assert (
        "main effects only"
        in effects.anova(_tables(_grid(SCORES), ["arch", "clip"]), max_axes=1)[1]
    )
    # Unbalanced (one run dropped): type II sums of squares, which differ from type I here.
    runs = _grid(SCORES).iloc[1:]
    table, _ = effects.anova(_tables(runs, ["arch", "clip"]))
    model = smf.ols("score ~ C(arch) * C(clip)", data=runs).fit()
    two, one = anova_lm(model, typ=2), anova_lm(model, typ=1)
    got = table.set_index("term")
    assert got.loc["arch", "sum_sq"] == pytest.approx(two.loc["C(arch)", "sum_sq"])
    assert abs(two.loc["C(arch)", "sum_sq"] - one.loc["C(arch)", "sum_sq"]) > 1e-6


def test_the_default_limits_six_levels_for_pairs_and_six_axes_for_interactions():
    rng = np.random.default_rng(0)
    seven = pd.DataFrame(
        {"k": np.repeat([f"l{i}" for i in range(7)], 2), "seed": [0, 1] * 7,
         "score": rng.uniform(size=14), "status": "ok"}
    )  # fmt: skip
    assert effects.pairwise(_tables(seven, ["k"])).empty  # 7 levels: over the default 6
    assert len(effects.pairwise(_tables(seven, ["k"]), max_levels=7)) == 21
    axes = [f"f{i}" for i in range(7)]
    design = pd.DataFrame(rng.integers(0, 2, size=(48, 7)).astype(str), columns=axes)
    runs = design.assign(seed=range(48), score=rng.normal(size=48), status="ok")
    assert "main effects only" in effects.anova(_tables(runs, axes))[1]  # 7 axes: over 6
    assert "two-way interactions" in effects.anova(_tables(runs, axes), max_axes=7)[1]
