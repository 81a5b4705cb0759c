"""Aggregation, derived metrics and statistics on small hand-built run folders with known answers."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
from scipy import stats

from keras_ablate import store
from keras_ablate.analysis import effects, load, simulate
from keras_ablate.analysis import stats as analysis_stats
from keras_ablate.config import RunSpec


def _spec(run_id: str, clip: str, seed: int = 0) -> RunSpec:
    settings = {"architecture": "rnn", "clip": clip, "learning_rate": 0.1, "kernel_sizes": [3, 4]}
    return RunSpec(
        "hand", run_id, settings, {"name": "ngram", "options": {"seq_len": 8}}, seed, {"clip": clip}
    )


def _write(exp_dir, run_id, clip, status, val_acc, loss, norm, clipped, diverged_step=None):
    spec = _spec(run_id, clip)
    if status == "failed":
        store.write_run(
            exp_dir,
            spec,
            {"run_id": run_id, "status": "failed", "error": "boom <b>", "wall_time_s": 0.5},
            {},
        )
        return
    history = pd.DataFrame(
        {
            "epoch": np.arange(1, len(val_acc) + 1),
            "train/loss": [1.0] * len(val_acc),
            "val/accuracy": val_acc,
        }
    )
    steps = pd.DataFrame(
        {
            "step": np.arange(len(loss)),
            "epoch": np.arange(len(loss)) // 2,
            "loss": loss,
            "grad/global_norm": norm,
            "grad/clipped": clipped,
            "grad/norm/rnn_0": np.array(norm) / 2,
            "grad/norm/dense_out": np.array(norm) / 3,
        }
    )
    summary = {
        "run_id": run_id,
        "status": status,
        "diverged_step": diverged_step,
        "metric": "accuracy",
        "steps_per_epoch": 2,
        "epochs_done": len(val_acc),
        "steps_done": len(loss),
        "wall_time_s": 1.0,
        "final": {
            "val/accuracy": val_acc[-1] if np.isfinite(val_acc[-1]) else None,
            "train/loss": 1.0,
        },
        "best": {"val/accuracy": float(np.nanmax(val_acc))},
    }
    store.write_run(exp_dir, spec, summary, {"history": history, "steps": steps})


@pytest.fixture
def hand(tmp_path):
    """Three runs: ok (clip none), diverged at step 2 (clip none), failed (clip norm:1.0)."""
    exp = tmp_path / "hand"
    _write(
        exp,
        "a_ok",
        "none",
        "ok",
        [0.5, 0.8],
        [1.0, 0.8, 0.6, 0.4],
        [1.0, 10.0, 100.0, 1000.0],
        [0, 0, 0, 0],
    )
    _write(
        exp,
        "b_div",
        "none",
        "diverged",
        [0.6, np.nan],
        [1.0, 2.0, np.nan],
        [2.0, 4.0, np.inf],
        [0, 0, 0],
        diverged_step=2,
    )
    _write(exp, "c_fail", "norm:1.0", "failed", [], [], [], [])
    store.write_json_atomic(
        exp / "experiment.json",
        {
            "name": "hand",
            "axes": ["clip"],
            "run_ids": ["a_ok", "b_div", "c_fail", "d_missing"],
            "analysis": {"metric": None, "target_fraction": 0.9, "target": None},
        },
    )
    return exp


def test_runs_table_has_settings_status_and_derived_metrics(hand):
    runs = load(hand).runs.set_index("run_id")
    assert list(runs.index) == ["a_ok", "b_div", "c_fail"]
    assert list(runs["status"].astype(str)) == ["ok", "diverged", "failed"]
    assert runs.loc["a_ok", "kernel_sizes"] == "3,4" and runs.loc["a_ok", "dataset.seq_len"] == 8
    assert list(runs["clip"].cat.categories) == ["none", "norm:1.0"]
    expected = pd.DataFrame(
        {
            "diverged": [False, True, False],
            # The diverged run has no finite final accuracy: it scores the worst finished value.
            "score": [0.8, 0.8, np.nan],
            # target = 0.9 x 0.8 = 0.72: met by a_ok at epoch 2, never by b_div.
            "epochs_to_target": [2.0, np.nan, np.nan],
            "steps_to_target": [4.0, np.nan, np.nan],
            # a_ok solved it, the diverged run counts as a seed that did not, the failed one is unknown.
            "reached_target": [1.0, 0.0, np.nan],
            # trapezoid over steps with x in epochs (2 steps per epoch): (0.5 + 0.8 + 0.6 + 0.2) / 2.
            "train_loss_auc": [1.05, np.nan, np.nan],
            # log10 norms 0,1,2,3: sample std; b_div keeps its finite steps (log10 2, log10 4).
            "grad/log10_norm_std": [
                np.std([0, 1, 2, 3], ddof=1),
                np.std(np.log10([2, 4]), ddof=1),
                np.nan,
            ],
            "grad/max_median_ratio": [1000.0 / 55.0, 4.0 / 3.0, np.nan],
            "grad/clip_rate": [0.0, 0.0, np.nan],
        },
        index=pd.Index(["a_ok", "b_div", "c_fail"], name="run_id"),
    )
    pdt.assert_frame_equal(runs[expected.columns], expected, check_dtype=False, rtol=1e-6)


def test_history_and_steps_are_long_with_layers_split(hand):
    tables = load(hand)
    h = tables.history[tables.history["run_id"] == "a_ok"].reset_index(drop=True)
    expected = pd.DataFrame(
        {
            "run_id": ["a_ok"] * 4,
            "epoch": [1, 1, 2, 2],
            "metric": ["train/loss", "val/accuracy"] * 2,
            "value": [1.0, 0.5, 1.0, 0.8],
        }
    )
    pdt.assert_frame_equal(h.astype({"run_id": str, "metric": str}), expected, check_dtype=False)
    s = tables.steps
    assert set(zip(s["quantity"].astype(str), s["layer"].astype(str), strict=False)) == {
        ("loss", ""),
        ("grad/global_norm", ""),
        ("grad/clipped", ""),
        ("grad/norm", "rnn_0"),
        ("grad/norm", "dense_out"),
    }
    rnn = tables.quantity("grad/norm", "rnn_0")
    pdt.assert_series_equal(
        rnn[rnn["run_id"] == "a_ok"]["value"].reset_index(drop=True),
        pd.Series([0.5, 5.0, 50.0, 500.0], dtype=np.float32, name="value"),
    )
    assert len(s[s["run_id"] == "c_fail"]) == 0 and s["value"].dtype == np.float32


def test_tables_round_trip_through_parquet(hand):
    tables = load(hand)
    paths = tables.save(hand / "tables")
    for name in ("runs", "history", "steps"):
        pdt.assert_frame_equal(pd.read_parquet(paths[name]), getattr(tables, name))


def test_counts_keep_failed_and_diverged_runs(hand):
    table = effects.main_effects(load(hand))
    none = table[table["level"] == "none"].iloc[0]
    assert (none["n_runs"], none["n_finished"], none["n_diverged"], none["divergence_rate"]) == (
        2,
        2,
        1,
        0.5,
    )
    clipped = table[table["level"] == "norm:1.0"].iloc[0]
    assert (clipped["n_runs"], clipped["n_failed"], clipped["n"]) == (1, 1, 0)


def test_partial_folder_loads_without_experiment_json(tmp_path):
    _write(tmp_path / "p", "a_ok", "none", "ok", [0.5, 0.8], [1.0, 0.8], [1.0, 2.0], [0, 1])
    (tmp_path / "p" / "runs" / ".tmp-half").mkdir()  # a run being written is ignored
    tables = load(tmp_path / "p")
    assert len(tables.runs) == 1 and tables.runs["grad/clip_rate"].iloc[0] == 0.5


def test_t_interval_matches_scipy_and_constant_metric_has_zero_width():
    frame = pd.DataFrame({"g": ["a"] * 4 + ["b"] * 3, "x": [1.0, 2.0, 4.0, 7.0, 3.0, 3.0, 3.0]})
    out = analysis_stats.group_intervals(frame, ["g"], ["x"]).set_index("g")
    low, high = stats.t.interval(0.95, 3, loc=3.5, scale=stats.sem([1, 2, 4, 7]))
    assert out.loc["a", "ci_low"] == pytest.approx(low) and out.loc[
        "a", "ci_high"
    ] == pytest.approx(high)
    assert out.loc["b", "ci_low"] == out.loc["b", "ci_high"] == 3.0


def test_single_run_has_no_interval():
    out = analysis_stats.group_intervals(pd.DataFrame({"g": ["a"], "x": [1.0]}), ["g"], ["x"])
    assert out["n"].iloc[0] == 1 and np.isnan(out["ci_low"].iloc[0])


def test_factor_that_does_nothing_has_effect_near_zero_covering_zero(tmp_path):
    grid = {
        "architecture": ["rnn", "lstm"],
        "normalization": ["none", "layer"],
        "clip": ["none", "norm:1.0"],
    }
    simulate.write_experiment(
        tmp_path / "s",
        grid,
        seeds=4,
        epochs=3,
        steps_per_epoch=4,
        noise=0.02,
        divergence=lambda axes: 0.0,
        seed=1,
    )
    table = effects.main_effects(load(tmp_path / "s")).set_index(["axis", "level"])
    null = table.loc[("normalization", "layer")]
    assert (
        abs(null["diff"]) < 0.02
        and null["diff_low"] < 0 < null["diff_high"]
        and null["diff_method"] == "paired"
    )
    # The simulated +0.15 on the ceiling, reached to 1 - exp(-epochs / 2) after 3 epochs.
    real = table.loc[("architecture", "lstm")]
    assert real["diff_low"] > 0.05 and real["diff"] == pytest.approx(
        0.15 * (1 - np.exp(-1.5)), abs=0.02
    )


def test_paired_difference_and_welch_fallback_are_exact():
    runs = pd.DataFrame(
        {"a": ["x", "y", "x", "y"], "seed": [0, 0, 1, 1], "score": [1.0, 3.0, 2.0, 5.0]}
    )
    paired = effects.difference(runs, ["a"], "a", "y", "x", "score")
    low, high = stats.t.interval(0.95, 1, loc=2.5, scale=stats.sem([2.0, 3.0]))
    assert (paired["diff"], paired["diff_method"]) == (2.5, "paired")
    assert paired["diff_low"] == pytest.approx(low) and paired["diff_high"] == pytest.approx(high)
    unpaired = runs.assign(seed=[0, 1, 2, 3])
    welch = effects.difference(unpaired, ["a"], "a", "y", "x", "score")
    result = stats.ttest_ind([3.0, 5.0], [1.0, 2.0], equal_var=False).confidence_interval(0.95)
    assert welch["diff_method"] == "welch" and welch["diff_low"] == pytest.approx(result.low)


def test_anova_finds_the_real_factor(tmp_path):
    grid = {"architecture": ["rnn", "lstm"], "activation": ["tanh", "relu"]}
    simulate.write_experiment(
        tmp_path / "s", grid, seeds=3, epochs=2, steps_per_epoch=2, divergence=lambda a: 0.0
    )
    table, note = effects.anova(load(tmp_path / "s"))
    table = table.set_index("term")
    assert table.loc["architecture", "p_value"] < 0.01 < table.loc["activation", "p_value"]
    assert "architecture x activation" in table.index and "residual" in note
    one_seed = tmp_path / "one"
    simulate.write_experiment(
        one_seed, {"architecture": ["rnn", "lstm"]}, seeds=1, epochs=2, steps_per_epoch=2
    )
    assert effects.anova(load(one_seed))[0] is None


def test_a_run_from_an_earlier_plan_keeps_its_setting_when_that_setting_becomes_an_axis(tmp_path):
    # The grid first varied clip only; later `init` became an axis too. The old run with
    # init=orthogonal is part of the new plan (same settings, same run_id) and must not turn NaN.
    from keras_ablate import store as run_store
    from keras_ablate.analysis import load as load_tables
    from keras_ablate.config import RunSpec

    def spec(run_id, init, axes):
        settings = {"architecture": "rnn", "init": init, "clip": "none"}
        return RunSpec("e", run_id, settings, {"name": "recall", "options": {}}, 0, axes)

    summary = {"status": "ok", "metric": "accuracy", "final": {"val/accuracy": 1.0}}
    run_store.write_run(tmp_path, spec("old", "orthogonal", {"clip": "none"}), summary, {})
    new_axes = {"init": "spectral_radius:0.5", "clip": "none"}
    run_store.write_run(tmp_path, spec("new", "spectral_radius:0.5", new_axes), summary, {})
    runs = load_tables(tmp_path).runs.set_index("run_id")
    assert runs.loc["old", "init"] == "orthogonal"
    assert runs.loc["new", "init"] == "spectral_radius:0.5"


def test_anova_sums_of_squares_and_partial_eta_squared_match_statsmodels_and_a_hand_count():
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    # A balanced 2 x 3 design, 3 replicates, with a main effect of a, a smaller one of b and
    # an interaction, on hand-built rows (no simulator).
    rng = np.random.default_rng(7)
    rows = []
    for i, a in enumerate(["lstm", "rnn"]):
        for j, b in enumerate(["none", "layer", "batch"]):
            for seed in range(3):
                y = 0.3 * i + 0.1 * j + 0.15 * i * (j == 2) + rng.normal(0, 0.05)
                rows.append({"architecture": a, "normalization": b, "seed": seed, "score": y})
    runs = pd.DataFrame(rows)
    tables = SimpleNamespace(runs=runs, axes=["architecture", "normalization"])
    table, note = effects.anova(tables)
    table = table.set_index("term")

    reference = anova_lm(
        smf.ols("score ~ C(architecture) * C(normalization)", data=runs).fit(), typ=2
    )
    residual = reference.loc["Residual", "sum_sq"]
    for ours, theirs in [
        ("architecture", "C(architecture)"),
        ("normalization", "C(normalization)"),
        ("architecture x normalization", "C(architecture):C(normalization)"),
    ]:
        ss = reference.loc[theirs, "sum_sq"]
        assert table.loc[ours, "sum_sq"] == pytest.approx(ss, rel=1e-9)
        assert table.loc[ours, "F"] == pytest.approx(reference.loc[theirs, "F"], rel=1e-9)
        assert table.loc[ours, "p_value"] == pytest.approx(
            reference.loc[theirs, "PR(>F)"], rel=1e-6
        )
        assert table.loc[ours, "partial_eta_sq"] == pytest.approx(ss / (ss + residual), rel=1e-9)
    # Balanced design: SS of a main effect = runs per level x squared deviations of level means;
    # the residual SS = squared deviations from the cell means.
    grand = runs["score"].mean()
    ss_a = 9 * ((runs.groupby("architecture")["score"].mean() - grand) ** 2).sum()
    cell = runs.groupby(["architecture", "normalization"])["score"].transform("mean")
    ss_resid = ((runs["score"] - cell) ** 2).sum()
    assert table.loc["architecture", "partial_eta_sq"] == pytest.approx(ss_a / (ss_a + ss_resid))
    assert np.isnan(table.loc["Residual", "partial_eta_sq"]) and "12 residual" in note
