"""The derived per-run metrics (analysis.metrics) on small hand-built tables, against the rules of
its docstring and GLOSSARY; every expected number is counted by hand or computed with numpy."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from keras_ablate.analysis import metrics
from keras_ablate.analysis.tables import Tables

NAN = math.nan


def _long_history(rows: list[tuple], run_ids: list[str]) -> pd.DataFrame:
    """(run_id, epoch, metric, value) rows as analysis.tables.load holds them (categorical keys)."""
    frame = pd.DataFrame(rows, columns=["run_id", "epoch", "metric", "value"])
    frame["run_id"] = pd.Categorical(frame["run_id"], categories=run_ids)
    frame["metric"] = pd.Categorical(frame["metric"])
    frame["epoch"] = frame["epoch"].astype(np.int64)
    frame["value"] = frame["value"].astype(float)
    return frame


def _long_steps(rows: list[tuple], run_ids: list[str]) -> pd.DataFrame:
    """(run_id, step, quantity, layer, value) rows as load holds them (value float32)."""
    frame = pd.DataFrame(rows, columns=["run_id", "step", "quantity", "layer", "value"])
    frame["run_id"] = pd.Categorical(frame["run_id"], categories=run_ids)
    frame["quantity"] = pd.Categorical(frame["quantity"])
    frame["layer"] = pd.Categorical(frame["layer"], categories=["", "rnn_0"])
    frame["step"] = frame["step"].astype(np.int64)
    frame["value"] = frame["value"].astype(np.float32)
    return frame


def _tables(runs: pd.DataFrame, history=None, steps=None, analysis=None) -> Tables:
    run_ids = list(runs["run_id"])
    return Tables(
        runs=runs,
        history=_long_history(history or [], run_ids),
        steps=_long_steps(steps or [], run_ids),
        axes=[],
        info={"analysis": analysis},
    )


# ---------------------------------------------------------------------------------------------
# chosen_metric, curve_metric


def _runs(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    return pd.DataFrame({"run_id": [f"r{i}" for i in range(n)], **columns})


def test_chosen_metric_is_the_configured_one_first():
    tables = _tables(_runs(metric=["accuracy"], **{"final/test/accuracy": [0.9]}))
    tables.info = {"analysis": {"metric": "val/loss"}}
    assert metrics.chosen_metric(tables) == "val/loss"


@pytest.mark.parametrize("analysis", [None, {}, {"metric": None}, {"metric": ""}])
def test_chosen_metric_without_a_configured_one_reads_the_runs(analysis):
    tables = _tables(_runs(metric=[None, "accuracy", "auc"]), analysis=analysis)
    # The first run that recorded a task metric; no held-out test column -> val/.
    assert metrics.chosen_metric(tables) == "val/accuracy"


def test_chosen_metric_prefers_the_held_out_test_score_when_a_run_has_one():
    runs = _runs(metric=["accuracy", "accuracy"], **{"final/test/accuracy": [NAN, 0.7]})
    assert metrics.chosen_metric(_tables(runs)) == "test/accuracy"
    runs["final/test/accuracy"] = NAN  # the column, but no run has a test score
    assert metrics.chosen_metric(_tables(runs)) == "val/accuracy"


def test_chosen_metric_defaults_to_the_validation_loss():
    assert metrics.chosen_metric(_tables(_runs(status=["ok"]))) == "val/loss"
    assert metrics.chosen_metric(_tables(_runs(metric=[None, None]))) == "val/loss"


@pytest.mark.parametrize(
    ("metric", "curve"),
    [
        ("test/accuracy", "val/accuracy"),
        ("test/loss", "val/loss"),
        ("val/accuracy", "val/accuracy"),
        ("train/loss", "train/loss"),
        ("best/test/accuracy", "best/test/accuracy"),
    ],
)
def test_curve_metric_reads_validation_for_a_test_metric(metric, curve):
    assert metrics.curve_metric(metric) == curve


# ---------------------------------------------------------------------------------------------
# score


def test_score_higher_is_better_diverged_takes_the_worst_finished_value_and_failed_is_nan():
    final = [0.8, 0.6, 0.99, 0.9, NAN, np.inf]
    diverged = [False, False, True, False, False, False]
    finished = np.array([True, True, True, False, True, True])
    # Usable: 0.8 and 0.6 (0.99 diverged, 0.9 failed, NaN and inf not finite). Worst = 0.6.
    out = metrics.score(final, diverged, finished, True)
    np.testing.assert_array_equal(out, [0.8, 0.6, 0.6, NAN, NAN, NAN])
    assert out.dtype == np.float64


def test_score_lower_is_better_takes_the_largest_finished_value():
    out = metrics.score(
        np.array([0.3, 0.5, NAN, 0.1]),
        np.array([False, False, True, True]),
        np.array([True, True, True, True]),
        False,
    )
    np.testing.assert_array_equal(out, [0.3, 0.5, 0.5, 0.5])


def test_score_without_a_usable_run_leaves_diverged_runs_nan():
    out = metrics.score(
        np.array([0.7, 0.9]), np.array([True, False]), np.array([True, False]), True
    )
    np.testing.assert_array_equal(out, [NAN, NAN])


def test_score_reads_a_missing_final_as_nan():
    # A JSON null in a record: no value, as NaN.
    out = metrics.score([0.5, None], [False, False], np.array([True, True]), True)
    np.testing.assert_array_equal(out, [0.5, NAN])


def test_score_takes_integer_flags_as_booleans():
    # diverged given as 0 / 1 (a claim table's 1.0 / 0.0): ~1 of an int array would be -2.
    out = metrics.score([0.4, 0.2], np.array([0, 1]), np.array([True, True]), True)
    np.testing.assert_array_equal(out, [0.4, 0.4])


# ---------------------------------------------------------------------------------------------
# target_value


def test_target_value_configured_wins_even_when_zero():
    finals = np.array([0.5, 0.8])
    assert metrics.target_value(finals, {"target": 0.0}, True) == 0.0
    value = metrics.target_value(finals, {"target": "0.75", "target_fraction": 0.5}, True)
    assert value == 0.75 and isinstance(value, float)


def test_target_value_is_a_fraction_of_the_best_finite_final():
    finals = np.array([0.5, NAN, 0.8, np.inf, -np.inf])
    assert metrics.target_value(finals, {}, True) == pytest.approx(0.9 * 0.8, rel=1e-15)
    assert metrics.target_value(finals, {"target": None}, True) == pytest.approx(0.72, rel=1e-15)
    assert metrics.target_value(finals, {"target_fraction": 0.5}, True) == pytest.approx(0.4)
    # Lower is better: within 1 / fraction of the smallest final.
    assert metrics.target_value(finals, {}, False) == pytest.approx(0.5 / 0.9, rel=1e-15)
    assert metrics.target_value(finals, {"target_fraction": 0.8}, False) == pytest.approx(0.625)
    assert isinstance(metrics.target_value(finals, {}, True), float)


def test_target_value_without_a_finite_final_is_none():
    assert metrics.target_value(np.array([NAN, np.inf]), {}, True) is None
    assert metrics.target_value(np.array([]), {"target_fraction": 0.5}, False) is None


# ---------------------------------------------------------------------------------------------
# epochs_to_target

RUN_IDS = ["a", "b", "c"]
HISTORY = [
    # epochs out of order: the first epoch is the smallest, not the first row
    ("a", 3, "val/accuracy", 0.95),
    ("a", 2, "val/accuracy", 0.9),
    ("a", 1, "val/accuracy", 0.5),
    ("b", 1, "val/accuracy", 0.4),
    ("b", 2, "val/accuracy", 0.89),
    ("c", 1, "val/accuracy", 0.3),
    ("c", 1, "val/loss", 0.2),  # another metric meets any target, but is not the curve
    ("c", 1, "train/accuracy", 0.99),
]


def test_epochs_to_target_is_the_first_epoch_at_or_past_the_target():
    history = _long_history(HISTORY, RUN_IDS)
    out = metrics.epochs_to_target(history, "val/accuracy", 0.9, True)
    # a meets 0.9 exactly at epoch 2 (inclusive); b and c never: absent, not NaN.
    pd.testing.assert_series_equal(out, pd.Series({"a": 2.0}), check_names=False)
    assert out.dtype == np.float64 and list(out.index) == ["a"]
    assert pd.api.types.is_string_dtype(out.index.dtype)


def test_epochs_to_target_lower_is_better_meets_at_or_below():
    history = _long_history(HISTORY, RUN_IDS)
    out = metrics.epochs_to_target(history, "val/accuracy", 0.4, False)
    assert out.to_dict() == {"b": 1.0, "c": 1.0}
    out = metrics.epochs_to_target(history, "val/loss", 0.2, False)
    assert out.to_dict() == {"c": 1.0}


def test_epochs_to_target_without_a_target_or_history_is_empty():
    history = _long_history(HISTORY, RUN_IDS)
    assert metrics.epochs_to_target(history, "val/accuracy", None, True).empty
    empty = metrics.epochs_to_target(_long_history([], RUN_IDS), "val/accuracy", 0.5, True)
    assert empty.empty and empty.dtype == np.float64


# ---------------------------------------------------------------------------------------------
# loss_auc


def test_loss_auc_is_the_trapezoid_area_over_consecutive_steps():
    a = [2.0, 1.5, 1.0, 0.7, 0.5]
    b = [3.0, 1.0]
    rows = [("a", i, v) for i, v in enumerate(a)] + [("b", i, v) for i, v in enumerate(b)]
    order = [6, 3, 0, 5, 1, 4, 2]  # shuffled: the area follows x, not row order
    shuffled = [rows[i] for i in order]
    frame = pd.DataFrame(shuffled, columns=["run_id", "step", "value"])
    frame["run_id"] = pd.Categorical(frame["run_id"], categories=["a", "b", "never"])
    out = metrics.loss_auc(frame, "step")
    assert list(out.index) == ["a", "b"]
    assert pd.api.types.is_string_dtype(out.index.dtype)  # plain run ids, not categories
    assert out["a"] == pytest.approx(np.trapezoid(a), rel=1e-12)
    assert out["b"] == pytest.approx(np.trapezoid(b), rel=1e-12)


def test_loss_auc_of_one_value_is_zero_and_any_non_finite_value_makes_it_nan():
    frame = pd.DataFrame(
        {
            "run_id": ["one", "nan", "nan", "nan", "inf", "inf", "ok", "ok"],
            "epoch": [1, 1, 2, 3, 1, 2, 1, 2],
            "value": [5.0, 1.0, NAN, 1.0, 1.0, np.inf, 1.0, 3.0],
        }
    )
    out = metrics.loss_auc(frame, "epoch")
    assert out["one"] == 0.0
    assert math.isnan(out["nan"]) and math.isnan(out["inf"])
    assert out["ok"] == 2.0
    empty = metrics.loss_auc(frame.iloc[0:0], "epoch")
    assert empty.empty and empty.dtype == np.float64


# ---------------------------------------------------------------------------------------------
# gradient_stability


def test_gradient_stability_over_finite_positive_global_norms():
    a_norms = [1.0, 10.0, 100.0, 1000.0, 0.0, np.inf, NAN]
    b_norms = [3.0, 2.0, 7.0]
    rows = [("a", i, "grad/global_norm", "", v) for i, v in enumerate(a_norms)]
    rows += [("b", i, "grad/global_norm", "", v) for i, v in enumerate(b_norms)]
    # A layer's own norm is not the global one.
    rows += [("a", 0, "grad/global_norm", "rnn_0", 1e6), ("a", 0, "grad/norm", "rnn_0", 1e-6)]
    rows += [("a", i, "grad/clipped", "", v) for i, v in enumerate([1.0, 0.0, 0.0, 1.0, NAN])]
    rows += [("b", i, "grad/clipped", "", 0.0) for i in range(3)]
    rows += [("b", 0, "loss", "", 1e9)]
    out = metrics.gradient_stability(_long_steps(rows, ["a", "b", "c"]))
    assert list(out.columns) == [
        "grad/log10_norm_std",
        "grad/max_median_ratio",
        "grad/clip_rate",
    ]
    assert sorted(out.index) == ["a", "b"]
    assert pd.api.types.is_string_dtype(out.index.dtype)
    # a: logs 0, 1, 2, 3 -> sample variance 5/3; max / median = 1000 / 55.
    assert out.loc["a", "grad/log10_norm_std"] == pytest.approx(math.sqrt(5 / 3), rel=1e-6)
    assert out.loc["a", "grad/max_median_ratio"] == pytest.approx(1000 / 55, rel=1e-6)
    assert out.loc["a", "grad/clip_rate"] == 0.5
    logs = np.log10(np.array(b_norms, dtype=np.float32).astype(float))
    assert out.loc["b", "grad/log10_norm_std"] == pytest.approx(np.std(logs, ddof=1), rel=1e-6)
    assert out.loc["b", "grad/max_median_ratio"] == pytest.approx(7 / 3, rel=1e-6)
    assert out.loc["b", "grad/clip_rate"] == 0.0


def test_gradient_stability_without_steps_is_an_empty_float_frame():
    out = metrics.gradient_stability(pd.DataFrame())
    assert out.empty
    assert list(out.columns) == ["grad/log10_norm_std", "grad/max_median_ratio", "grad/clip_rate"]
    assert (out.dtypes == np.float64).all()


# ---------------------------------------------------------------------------------------------
# add_derived on a hand-built experiment: a and b finished, c diverged (its record still holds
# finite finals, as an older version wrote them), d failed.

LOSS_A = [1.2, 1.0, 0.9, 0.8, 0.7, 0.6, 0.55, 0.5, 0.45, 0.4, 0.35, 0.3]


def _experiment(analysis=None, with_steps_per_epoch=True) -> Tables:
    runs = pd.DataFrame(
        {
            "run_id": ["a", "b", "c", "d"],
            "status": pd.Categorical(
                ["ok", "ok", "diverged", "failed"], categories=["ok", "diverged", "failed"]
            ),
            "metric": ["accuracy"] * 4,
            "final/test/accuracy": [0.80, 0.70, 0.95, NAN],
            "final/val/accuracy": [0.90, 0.60, 0.99, NAN],
            "final/val/loss": [0.3, 0.5, 0.1, NAN],
            "baseline/n_val": [100.0] * 4,  # plateau tolerance 1 / sqrt(100) = 0.1
        }
    )
    if with_steps_per_epoch:
        runs["steps_per_epoch"] = [4.0] * 4
    curves = {
        ("a", "val/accuracy"): [0.5, 0.75, 0.9],
        ("a", "train/accuracy"): [0.6, 0.9, 0.92],
        ("a", "train/loss"): [1.0, 0.6, 0.4],
        ("a", "val/loss"): [1.0, 0.7, 0.3],
        ("b", "val/accuracy"): [0.4, 0.55, 0.6],
        ("b", "train/accuracy"): [0.5, 0.6, 0.8],
        ("b", "train/loss"): [1.2, 1.0, 0.9],
        ("b", "val/loss"): [0.9, 0.8, 0.5],
        ("c", "val/accuracy"): [0.85, NAN],
        ("c", "train/loss"): [0.9, 0.7],
        ("c", "val/loss"): [0.55, NAN],
    }
    history = [
        (run, epoch, metric, value)
        for (run, metric), values in curves.items()
        for epoch, value in enumerate(values, start=1)
    ]
    steps = []
    for run, loss, norms, clipped, cosine in (
        ("a", LOSS_A, [1.0, 10.0, 100.0, 1000.0], [1.0, 0.0, 0.0, 1.0], [0.9, 1.0, 1.0, 0.7]),
        ("b", [2.0] * 12, [2.0, 2.0, 2.0, 8.0], [0.0] * 4, [1.0] * 4),
    ):
        # Steps in reverse order: the area follows the step, not the row.
        steps += [(run, i, "loss", "", v) for i, v in reversed(list(enumerate(loss)))]
        steps += [(run, i, "grad/global_norm", "", v) for i, v in enumerate(norms)]
        steps += [(run, i, "grad/clipped", "", v) for i, v in enumerate(clipped)]
        steps += [(run, i, "grad/cosine", "", v) for i, v in enumerate(cosine)]
    return _tables(runs, history, steps, analysis)


def _values(tables: Tables, column: str) -> list[float]:
    return tables.runs[column].to_numpy(dtype=float).tolist()


def _assert_values(actual, expected, rel=1e-12):
    actual = np.asarray(actual, dtype=float)
    expected = np.asarray(expected, dtype=float)
    assert np.array_equal(np.isnan(actual), np.isnan(expected)), (actual, expected)
    finite = ~np.isnan(expected)
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=rel)


def test_add_derived_scores_targets_and_areas_of_a_higher_is_better_test_metric():
    tables = _experiment()
    metrics.add_derived(tables)
    runs = tables.runs
    # The metric is test/accuracy (a run has a held-out score); its curve is val/accuracy.
    info = tables.info["derived"]
    assert set(info) == {"metric", "curve_metric", "higher_is_better", "target"}
    assert info["metric"] == "test/accuracy" and info["curve_metric"] == "val/accuracy"
    assert info["higher_is_better"] is True
    # Target: 0.9 x the best final val/accuracy of the runs that finished without diverging
    # (0.9, not c's stale 0.99, not the test score 0.8).
    assert info["target"] == pytest.approx(0.81, rel=1e-12)
    assert runs["diverged"].dtype == bool
    assert runs["diverged"].tolist() == [False, False, True, False]
    # c diverged: the worst finished test accuracy (0.7), whatever its record says.
    _assert_values(runs["score"], [0.80, 0.70, 0.70, NAN])
    # a meets 0.81 at epoch 3 (0.9), b never, c at epoch 1 (0.85) but diverged later.
    _assert_values(runs["epochs_to_target"], [3, NAN, 1, NAN])
    _assert_values(runs["steps_to_target"], [12, NAN, 4, NAN])
    _assert_values(runs["reached_target"], [1, 0, 0, NAN])
    # Steps' loss area / 4 steps per epoch; c recorded no steps: its history's train/loss.
    area_a = np.trapezoid(np.asarray(LOSS_A, dtype=np.float32).astype(float)) / 4
    _assert_values(runs["train_loss_auc"], [area_a, 11 * 2.0 / 4, 0.8, NAN], rel=1e-6)
    logs_b = np.log10([2.0, 2.0, 2.0, 8.0])
    _assert_values(
        runs["grad/log10_norm_std"], [math.sqrt(5 / 3), np.std(logs_b, ddof=1), NAN, NAN], 1e-6
    )
    _assert_values(runs["grad/max_median_ratio"], [1000 / 55, 4.0, NAN, NAN], rel=1e-6)
    _assert_values(runs["grad/clip_rate"], [0.5, 0.0, NAN, NAN])
    # Plateaus (last 2 of 3 epochs within 0.1): of the curve, under the metric's name, and of
    # every other accuracy in the history; none of a loss.
    _assert_values(runs["plateau/test/accuracy"], [0, 1, NAN, NAN])
    _assert_values(runs["plateau/val/accuracy"], [0, 1, NAN, NAN])
    _assert_values(runs["plateau/train/accuracy"], [1, 0, NAN, NAN])
    assert "plateau/train/loss" not in runs.columns and "plateau/val/loss" not in runs.columns
    # The probe instruments by row: a's mean cosine over its clipped steps (0.9, 0.7).
    _assert_values(runs["cosine_clipped"], [0.8, NAN, NAN, NAN], rel=1e-6)
    for column in (*metrics.DERIVED, "reached_target"):
        assert runs[column].dtype == (bool if column == "diverged" else np.float64), column
    assert len(runs) == 4 and list(runs["run_id"]) == ["a", "b", "c", "d"]
    assert runs.columns.is_unique


def test_add_derived_puts_each_runs_records_on_its_row():
    tables = _experiment()
    tables.runs.index = [7, 3, 5, 1]  # any index: the columns follow the rows
    records = {"c": {"init/loss": 0.9, "gap/loss": 0.2}, "a": {"init/loss": 1.2}}
    metrics.add_derived(tables, records)
    assert list(tables.runs.index) == [7, 3, 5, 1] and len(tables.runs) == 4
    _assert_values(tables.runs["init/loss"], [1.2, NAN, 0.9, NAN])
    _assert_values(tables.runs["gap/loss"], [NAN, NAN, 0.2, NAN])
    _assert_values(tables.runs["plateau/train/accuracy"], [1, 0, NAN, NAN])
    _assert_values(tables.runs["cosine_clipped"], [0.8, NAN, NAN, NAN], rel=1e-6)


def test_add_derived_columns_follow_the_runs_order_not_the_tables_order():
    tables = _experiment()
    tables.runs = tables.runs.iloc[::-1].reset_index(drop=True)  # d, c, b, a
    metrics.add_derived(tables, {"a": {"init/loss": 1.2}})
    assert list(tables.runs["run_id"]) == ["d", "c", "b", "a"]
    _assert_values(tables.runs["score"], [NAN, 0.70, 0.70, 0.80])
    _assert_values(tables.runs["epochs_to_target"], [NAN, 1, NAN, 3])
    _assert_values(tables.runs["grad/clip_rate"], [NAN, NAN, 0.0, 0.5])
    _assert_values(tables.runs["plateau/train/accuracy"], [NAN, NAN, 0, 1])
    _assert_values(tables.runs["cosine_clipped"], [NAN, NAN, NAN, 0.8], rel=1e-6)
    _assert_values(tables.runs["init/loss"], [NAN, NAN, NAN, 1.2])


def test_add_derived_rejects_a_record_that_reuses_a_derived_name():
    with pytest.raises(ValueError, match="share a name.*score"):
        metrics.add_derived(_experiment(), {"a": {"score": 1.0}})
    # Or the name of a plateau or instrument column added with it.
    with pytest.raises(ValueError, match="share a name.*plateau/train/accuracy"):
        metrics.add_derived(_experiment(), {"a": {"plateau/train/accuracy": 1.0}})


def test_add_derived_plateau_of_a_validation_metric_is_added_once():
    tables = _experiment({"metric": "val/accuracy"})
    metrics.add_derived(tables)
    assert tables.info["derived"]["curve_metric"] == "val/accuracy"
    assert list(tables.runs.columns).count("plateau/val/accuracy") == 1
    _assert_values(tables.runs["plateau/val/accuracy"], [0, 1, NAN, NAN])
    _assert_values(tables.runs["score"], [0.9, 0.6, 0.6, NAN])


def test_add_derived_without_records_plateaus_or_probes_adds_only_its_own_columns():
    runs = pd.DataFrame(
        {"run_id": ["a", "b"], "status": ["ok", "ok"], "final/val/loss": [0.5, 0.25]}
    )
    history = [("a", 1, "val/loss", 0.5), ("b", 1, "val/loss", 0.25)]
    steps = [("a", 0, "loss", "", 1.0), ("a", 1, "loss", "", 0.5)]
    tables = _tables(runs, history, steps)
    metrics.add_derived(tables, {})
    added = set(tables.runs.columns) - {"run_id", "status", "final/val/loss"}
    assert added == {*metrics.DERIVED, "reached_target"}
    _assert_values(tables.runs["score"], [0.5, 0.25])
    # Target 0.25 / 0.9: a never meets it.
    _assert_values(tables.runs["epochs_to_target"], [NAN, 1])


def test_add_derived_of_a_metric_no_run_recorded():
    tables = _experiment({"metric": "val/f1"})
    metrics.add_derived(tables)
    assert tables.info["derived"]["target"] is None
    assert tables.info["derived"]["higher_is_better"] is True
    _assert_values(tables.runs["score"], [NAN] * 4)
    _assert_values(tables.runs["reached_target"], [0, 0, 0, NAN])


def test_add_derived_lower_is_better_with_a_configured_fraction():
    tables = _experiment({"metric": "val/loss", "target_fraction": 0.5})
    metrics.add_derived(tables)
    runs = tables.runs
    # Target: smallest ok final val/loss (0.3) / 0.5 = 0.6; c's stale 0.1 is not used.
    assert tables.info["derived"] == {
        "metric": "val/loss",
        "curve_metric": "val/loss",
        "higher_is_better": False,
        "target": pytest.approx(0.6, rel=1e-12),
    }
    # The worst loss is the largest: c scores b's 0.5.
    _assert_values(runs["score"], [0.3, 0.5, 0.5, NAN])
    # a: 1.0, 0.7, 0.3 -> epoch 3; b: 0.9, 0.8, 0.5 -> epoch 3; c: 0.55 -> epoch 1.
    _assert_values(runs["epochs_to_target"], [3, 3, 1, NAN])
    _assert_values(runs["reached_target"], [1, 1, 0, NAN])
    assert "plateau/val/loss" not in runs.columns
    _assert_values(runs["plateau/val/accuracy"], [0, 1, NAN, NAN])


def test_add_derived_configured_target_and_no_steps_per_epoch():
    tables = _experiment({"target": 0.55}, with_steps_per_epoch=False)
    metrics.add_derived(tables)
    assert tables.info["derived"]["target"] == 0.55
    # a: 0.75 at epoch 2; b: 0.55 at epoch 2 (inclusive); c: 0.85 at epoch 1.
    _assert_values(tables.runs["epochs_to_target"], [2, 2, 1, NAN])
    # Without steps per epoch neither the steps to target nor a per-step area is known; the
    # history's area needs none.
    _assert_values(tables.runs["steps_to_target"], [NAN] * 4)
    _assert_values(tables.runs["train_loss_auc"], [NAN, NAN, 0.8, NAN])


def test_add_derived_without_a_finished_run_has_no_target():
    tables = _experiment()
    tables.runs["status"] = "failed"
    metrics.add_derived(tables)
    assert tables.info["derived"]["target"] is None
    for column in ("score", "epochs_to_target", "steps_to_target", "reached_target"):
        _assert_values(tables.runs[column], [NAN] * 4)


def test_add_derived_on_no_runs_adds_empty_columns():
    runs = pd.DataFrame(columns=["run_id", "status"])
    tables = _tables(runs, analysis={"metric": "val/accuracy"})
    metrics.add_derived(tables)
    assert tables.info["derived"] == {
        "metric": "val/accuracy",
        "higher_is_better": False,
        "target": None,
    }
    for column in metrics.DERIVED:
        expected = bool if column == "diverged" else np.float64
        assert tables.runs[column].dtype == expected, column
    assert tables.runs.empty


# ---------------------------------------------------------------------------------------------
# record_metrics: one run's own tables as it wrote them (numpy columns, steps in float32).


def _f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def _run_steps(n: int = 20) -> dict[str, np.ndarray]:
    return {
        "run_id": np.array(["r"] * n),
        "step": np.arange(n),
        "epoch": np.arange(n) // 5,
        "loss": _f32(np.linspace(0.9, 0.05, n)),
        "grad/global_norm": _f32([0.5, 4.0, 0.0, 2.0, 8.0] + [1.0] * (n - 5)),
        "grad/cosine": _f32([NAN, 0.4, 0.9] + [1.0] * (n - 3)),
        "grad/norm/rnn_0": _f32([3.0] + [5.0] * (n - 1)),
        "grad/norm/conv_k3_1": _f32([9.0] * n),
        "grad/norm/dense_2": _f32([0.5] + [7.0] * (n - 1)),
        "grad/norm/output": _f32([100.0] * n),  # not a hidden layer
    }


def test_record_metrics_of_the_steps():
    steps = _run_steps()
    out = metrics.record_metrics({}, {"steps": steps})
    # First-step values of every recorded quantity, not of the keys.
    for column in ("loss", "grad/global_norm", "grad/norm/rnn_0", "grad/norm/output"):
        assert out[f"init/{column}"] == float(steps[column][0])
    assert math.isnan(out["init/grad/cosine"])
    assert not {"init/step", "init/epoch", "init/run_id"} & set(out)
    assert out["max/grad/global_norm"] == 8.0
    assert out["min/grad/cosine"] == pytest.approx(0.4, rel=1e-6)
    # Depth ratio: the first hidden layer over the last one (the output layer is not hidden).
    assert out["init/grad/depth_ratio"] == 6.0  # 3 / 0.5 at the first step
    # Population std of the float32 logs of the finite positive norms (the 0 is left out).
    norms = steps["grad/global_norm"]
    logs = np.log10(norms[norms > 0]).astype(np.float64)
    assert out["grad/log10_norm_std_ddof0"] == pytest.approx(np.std(logs), rel=1e-6)
    # Loss ratio: mean of the last 10 % of the 20 steps (2) over the mean of the first 5.
    loss = steps["loss"].astype(np.float64)
    assert out["loss_ratio"] == pytest.approx(loss[-2:].mean() / loss[:5].mean(), rel=1e-12)


def test_record_metrics_of_few_or_non_finite_steps():
    steps = {
        "step": np.arange(3),
        "loss": _f32([2.0, 1.0, 4.0]),
        "grad/global_norm": _f32([np.inf, 0.0, 3.0]),
        "grad/cosine": _f32([NAN, NAN, NAN]),
        "grad/norm/rnn_0": _f32([1.0, 1.0, 1.0]),
        "grad/norm/dense_1": _f32([0.0, 1.0, 1.0]),
    }
    out = metrics.record_metrics({}, {"steps": steps})
    assert out["max/grad/global_norm"] == np.inf  # a norm that is not finite
    assert math.isnan(out["grad/log10_norm_std_ddof0"])  # one finite positive norm
    assert math.isnan(out["min/grad/cosine"])
    assert math.isnan(out["init/grad/depth_ratio"])  # the last hidden layer's norm is 0
    # 3 steps: the tail is the last step (4.0), the head all three (mean 7 / 3).
    assert out["loss_ratio"] == pytest.approx(4.0 / (7 / 3), rel=1e-12)
    two = {"grad/global_norm": _f32([1.0, 100.0]), "grad/norm/rnn_0": _f32([2.0, 1.0])}
    out = metrics.record_metrics({}, {"steps": two})
    assert out["grad/log10_norm_std_ddof0"] == pytest.approx(1.0, rel=1e-6)  # logs 0 and 2
    assert out["max/grad/global_norm"] == 100.0
    assert "init/grad/depth_ratio" not in out  # one hidden layer
    assert "loss_ratio" not in out and "min/grad/cosine" not in out
    # The first 5 losses are 0: no ratio (the 6th step does not count).
    zero = metrics.record_metrics({}, {"steps": {"loss": _f32([0.0] * 5 + [1.0, 1.0])}})
    assert math.isnan(zero["loss_ratio"])


def test_record_metrics_a_nan_norm_makes_the_largest_inf_and_the_cosine_needs_no_nan():
    steps = {"grad/global_norm": _f32([1.0, NAN, 2.0]), "grad/cosine": _f32([0.5, 0.25, 1.0])}
    out = metrics.record_metrics({}, {"steps": steps})
    assert out["max/grad/global_norm"] == np.inf
    assert out["min/grad/cosine"] == 0.25
    assert out["grad/log10_norm_std_ddof0"] == pytest.approx(np.std(np.log10([1.0, 2.0])))


def test_record_metrics_of_an_all_nan_cosine_warn_nothing():
    # Every step unclipped (NaN cosine): NaN, without numpy's all-NaN warning in the report log.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = metrics.record_metrics({}, {"steps": {"grad/cosine": _f32([NAN, NAN])}})
    assert math.isnan(out["min/grad/cosine"])


def test_record_metrics_without_steps_or_with_empty_tables():
    empty_steps = {"step": np.zeros(0, int), "loss": np.zeros(0, np.float32)}
    empty_history = {"epoch": np.zeros(0, int), "train/loss": np.zeros(0)}
    raw = {"steps": empty_steps, "history": empty_history, "units": pd.DataFrame()}
    assert metrics.record_metrics({}, raw) == {}
    assert metrics.record_metrics({}, {}) == {}
    assert metrics.record_metrics({}, {"steps": None, "history": None, "units": None}) == {}


def _history(**columns) -> dict[str, np.ndarray]:
    n = len(next(iter(columns.values())))
    return {"epoch": np.arange(1, n + 1), **{k: np.asarray(v) for k, v in columns.items()}}


HISTORY_COLUMNS = {
    "train/loss": [1.0, 0.8, 0.6],
    "val/loss": [1.1, 0.9, 0.75],
    "train/accuracy": [0.5, 0.7, 0.9],
    "val/accuracy": [0.4, 0.6, 0.85],
}


def test_record_metrics_of_a_finished_history():
    out = metrics.record_metrics({"diverged_step": None}, {"history": _history(**HISTORY_COLUMNS)})
    assert out["gap/accuracy"] == pytest.approx(0.9 - 0.85, rel=1e-12)  # train - val
    assert out["gap/loss"] == pytest.approx(0.75 - 0.6, rel=1e-12)  # val - train
    for name, values in HISTORY_COLUMNS.items():
        assert out[f"epoch1/{name}"] == values[0]
    assert out["mean/train/loss"] == pytest.approx(0.8, rel=1e-12)
    assert "epoch1/epoch" not in out and "mean/val/loss" not in out
    assert len(out) == 2 + 4 + 1


def test_record_metrics_gap_needs_both_splits():
    history = _history(**{"train/accuracy": [0.5, 0.9], "val/loss": [1.0, 0.5]})
    out = metrics.record_metrics({}, {"history": history})
    assert "gap/accuracy" not in out and "gap/loss" not in out
    assert "mean/train/loss" not in out
    # A history without epochs, of a run that did not diverge: read as written.
    no_epoch = {"train/loss": np.array([1.0, 0.5]), "val/loss": np.array([2.0, 0.75])}
    out = metrics.record_metrics({}, {"history": no_epoch})
    assert out == {
        "gap/loss": 0.25,
        "epoch1/train/loss": 1.0,
        "epoch1/val/loss": 2.0,
        "mean/train/loss": 0.75,
    }


def test_record_metrics_of_a_float32_history_compute_in_float64():
    values = _f32([0.7, 0.3, 0.1])
    history = {"epoch": np.arange(1, 4), "train/loss": values, "val/loss": _f32([0.9, 0.6, 0.2])}
    out = metrics.record_metrics({}, {"history": history})
    wide = values.astype(np.float64)
    assert out["mean/train/loss"] == (wide[0] + wide[1] + wide[2]) / 3
    assert out["gap/loss"] == np.float64(np.float32(0.2)) - wide[2]


@pytest.mark.parametrize(
    ("diverged_step", "train_epochs", "val_epochs"),
    [
        # 4 steps per epoch: training values of epoch e need e*4 <= k, end-of-epoch values e*4 < k.
        (13, 3, 3),
        (12, 3, 2),
        (9, 2, 2),
        (8, 2, 1),
        (4, 1, 0),
        (0, 0, 0),
    ],
)
def test_record_metrics_of_a_diverged_history_keep_only_the_epochs_before_it(
    diverged_step, train_epochs, val_epochs
):
    columns = {k: [*v, 0.5] for k, v in HISTORY_COLUMNS.items()}  # epoch 4: the diverged one
    summary = {"diverged_step": diverged_step, "steps_per_epoch": 4}
    out = metrics.record_metrics(summary, {"history": _history(**columns)})

    def last(name, kept):
        return columns[name][kept - 1] if kept == 4 else NAN

    train_loss = np.array(columns["train/loss"])
    mean = train_loss.mean() if train_epochs == 4 else NAN
    expected = {
        "epoch1/train/loss": 1.0 if train_epochs >= 1 else NAN,
        "epoch1/train/accuracy": 0.5 if train_epochs >= 1 else NAN,
        "epoch1/val/loss": 1.1 if val_epochs >= 1 else NAN,
        "epoch1/val/accuracy": 0.4 if val_epochs >= 1 else NAN,
        "mean/train/loss": mean,
        "gap/loss": last("val/loss", val_epochs) - last("train/loss", train_epochs),
        "gap/accuracy": last("train/accuracy", train_epochs) - last("val/accuracy", val_epochs),
    }
    assert set(out) == set(expected)
    for key, value in expected.items():
        _assert_values([out[key]], [value])


def test_record_metrics_of_a_diverged_history_keeps_epochs_by_split():
    # Diverged at step 8 of 4 per epoch after 2 epochs: train keeps both, val only the first.
    history = _history(**{"train/loss": [1.0, 0.6], "val/loss": [1.2, 0.7]})
    out = metrics.record_metrics({"diverged_step": 8, "steps_per_epoch": 4}, {"history": history})
    assert out["mean/train/loss"] == pytest.approx(0.8, rel=1e-12)
    assert out["epoch1/val/loss"] == 1.2
    assert math.isnan(out["gap/loss"])
    out = metrics.record_metrics({"diverged_step": 9, "steps_per_epoch": 4}, {"history": history})
    assert out["gap/loss"] == pytest.approx(0.1, rel=1e-12)
    # Without an epoch column nothing can be matched to the diverged step: values as written.
    no_epoch = {k: v for k, v in history.items() if k != "epoch"}
    out = metrics.record_metrics({"diverged_step": 0, "steps_per_epoch": 4}, {"history": no_epoch})
    assert out["gap/loss"] == pytest.approx(0.1, rel=1e-12)
    assert out["epoch1/train/loss"] == 1.0


def test_record_metrics_of_the_gate_means():
    units = pd.DataFrame(
        [
            # rnn_1 comes first in the table, but rnn_0 is the first recurrent layer.
            (0, "rnn_1", "gate_mean/input", 0.9),
            (5, "rnn_0", "gate_mean/input", 0.3),
            (0, "rnn_0", "gate_mean/input", 0.5),
            (2, "rnn_0", "gate_mean/input", 0.4),
            (0, "rnn_0", "gate_mean/forget", 0.6),
            (5, "rnn_0", "gate_mean/forget", 0.7),
            (0, "rnn_0", "saturated", 0.1),
            (5, "rnn_0", "saturated", 0.2),
            (7, "rnn_1", "gate_mean/input", 0.8),
        ],
        columns=["epoch", "layer", "quantity", "value"],
    )
    out = metrics.record_metrics({}, {"units": units})
    assert out == {
        "gate_mean/input/init": 0.5,
        "gate_mean/forget/init": 0.6,
        "gate_mean/input/final": 0.3,
        "gate_mean/forget/final": 0.7,
    }
    assert metrics.record_metrics({}, {"units": units[units["quantity"] == "saturated"]}) == {}
