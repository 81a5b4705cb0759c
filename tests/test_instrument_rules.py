"""The rules of analysis/instruments.py on hand-built probe and step tables.

Pure pandas, no model is trained, so these tests can run once per mutant (docs/MUTATION.md).
Every expected number is counted by hand from the frame the test builds, or is the
least-squares slope written out as its closed form (cov(d, y) / var(d)); none comes from the
functions under test.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from keras_ablate.analysis import instruments


def _factor(distance, norms) -> float:
    """exp of the least-squares slope of log(norm) against distance, in closed form."""
    d = np.asarray(distance, dtype=float)
    y = np.log(np.asarray(norms, dtype=float))
    slope = ((d - d.mean()) * (y - y.mean())).sum() / ((d - d.mean()) ** 2).sum()
    return math.exp(slope)


def _series(norms, run_id="a", epoch=0, layer="rnn_0"):
    """One timestep series: t = 0..T-1, distance from the output T-1-t."""
    steps = len(norms)
    t = np.arange(steps)
    return pd.DataFrame(
        {
            "run_id": run_id,
            "epoch": epoch,
            "layer": layer,
            "t": t,
            "distance": steps - 1 - t,
            "grad_norm": np.asarray(norms, dtype=float),
        }
    )


def _rows(frame: pd.DataFrame, columns: list[str]) -> list[tuple]:
    return list(frame[columns].itertuples(index=False, name=None))


def _close(actual, expected) -> bool:
    return actual == pytest.approx(expected, nan_ok=True)


# --- fit_decay -------------------------------------------------------------------------------------


def test_fit_decay_is_exp_of_the_least_squares_slope_not_the_intercept():
    distance = np.arange(5)
    # Not an exact power: the fit is a compromise, which a quadratic fit or the intercept
    # (log 50 + noise) would not give.
    norms = 50.0 * 0.6**distance * np.array([1.1, 0.9, 1.05, 1.0, 0.95])
    expected = _factor(distance, norms)
    assert 0.55 < expected < 0.65
    assert instruments.fit_decay(distance, norms) == pytest.approx(expected, rel=1e-12)
    # Row order does not matter (pandas Series in, as timestep_metrics passes them).
    order = [3, 0, 4, 1, 2]
    assert instruments.fit_decay(
        pd.Series(distance[order]), pd.Series(norms[order])
    ) == pytest.approx(expected, rel=1e-12)
    # Two points one apart are enough: 3 at distance 0, 1.5 at distance 1 is a factor 0.5.
    assert instruments.fit_decay([3, 4], [3.0, 1.5]) == pytest.approx(0.5)
    assert instruments.fit_decay([0, 1], [3.0, 1.5]) == pytest.approx(0.5)
    # Growing going back in time (exploding): 1, 2, 4 at distances 0, 1, 2.
    assert instruments.fit_decay([0, 2], [1.0, 4.0]) == pytest.approx(2.0)


def test_fit_decay_drops_zero_negative_missing_and_non_finite_points():
    distance = np.arange(9, dtype=float)
    norms = 0.8**distance  # every norm is at most 1
    norms[1], norms[3], norms[5], norms[7] = 0.0, -1.0, np.inf, np.nan
    distance[6] = np.nan
    # Kept: distances 0, 2, 4, 8 with norms 0.8**d exactly.
    assert instruments.fit_decay(distance, norms) == pytest.approx(0.8)
    # A missing value given as None (an object column) is dropped like NaN.
    assert instruments.fit_decay([3, 2, 1, 0], [None, 4.0, 2.0, 1.0]) == pytest.approx(2.0)
    assert instruments.fit_decay([None, 2, 1, 0], [8.0, 4.0, 2.0, 1.0]) == pytest.approx(2.0)


def test_fit_decay_is_nan_with_fewer_than_two_points_or_one_distance():
    assert math.isnan(instruments.fit_decay([0], [1.0]))
    assert math.isnan(instruments.fit_decay([], []))
    assert math.isnan(instruments.fit_decay([0, 1, 2], [0.0, 0.0, 1.0]))
    assert math.isnan(instruments.fit_decay([0, 1, 2], [np.nan, -3.0, 1.0]))
    # Three points, all at one distance: no slope.
    assert math.isnan(instruments.fit_decay([2, 2, 2], [1.0, 2.0, 4.0]))


# --- timestep_metrics ----------------------------------------------------------------------------


def test_timestep_metrics_one_row_per_series_in_key_order_with_the_t0_ratio():
    irregular = [1.0, 3.0, 2.0, 6.0, 5.0]
    series = [
        _series([8.0, 4.0, 2.0, 1.0], "b", 0, "rnn_0"),
        _series(irregular, "a", 1, "rnn_1"),
        _series([3.0, 1.0, 0.0], "a", 0, "rnn_1"),  # last norm 0: no ratio
        _series([2.0, 2.0], "a", 0, "rnn_0"),
        _series([np.inf, 2.0, 1.0], "c", 0, "rnn_0"),  # first norm not finite
        _series([np.nan, 2.0, 1.0], "c", 1, "rnn_0"),
        _series([4.0, 2.0, np.inf], "c", 2, "rnn_0"),  # last norm not finite
    ]
    frame = pd.concat(series, ignore_index=True)
    frame = frame.iloc[np.random.default_rng(0).permutation(len(frame))]  # t out of order
    out = instruments.timestep_metrics(frame)
    assert list(out.columns) == ["run_id", "epoch", "layer", "decay_factor", "t0_ratio"]
    expected = [
        # key, decay factor (closed form on the finite positive points), norm(t=0) / norm(t=T-1)
        (("a", 0, "rnn_0"), 1.0, 1.0),
        (("a", 0, "rnn_1"), 3.0, np.nan),  # norms 3, 1 at distances 2, 1
        (("a", 1, "rnn_1"), _factor([4, 3, 2, 1, 0], irregular), 1.0 / 5.0),
        (("b", 0, "rnn_0"), 2.0, 8.0),
        (("c", 0, "rnn_0"), 2.0, np.nan),
        (("c", 1, "rnn_0"), 2.0, np.nan),
        (("c", 2, "rnn_0"), 2.0, np.nan),  # norms 4, 2 at distances 2, 1
    ]
    assert _rows(out, ["run_id", "epoch", "layer"]) == [key for key, _, _ in expected]
    for (key, decay, ratio), got_decay, got_ratio in zip(
        expected, out["decay_factor"], out["t0_ratio"], strict=True
    ):
        assert _close(got_decay, decay), key
        assert _close(got_ratio, ratio), key


def test_timestep_metrics_keeps_every_other_column_as_a_key():
    frame = pd.concat([_series([4.0, 2.0, 1.0]), _series([1.0, 1.0, 1.0])], ignore_index=True)
    frame["probe"] = ["x"] * 3 + ["w"] * 3
    out = instruments.timestep_metrics(frame)
    assert list(out.columns) == ["run_id", "epoch", "layer", "probe", "decay_factor", "t0_ratio"]
    assert list(out["probe"]) == ["w", "x"]
    assert list(out["decay_factor"]) == pytest.approx([1.0, 2.0])
    empty = instruments.timestep_metrics(frame.iloc[:0])
    assert empty.empty
    assert list(empty.columns) == ["run_id", "epoch", "layer", "probe", "decay_factor", "t0_ratio"]


# --- depth_metrics -------------------------------------------------------------------------------


def test_is_body_layer_skips_the_embedding_and_normalization_layers():
    assert not instruments.is_body_layer("embed")
    assert not instruments.is_body_layer("dense_0_norm")
    assert not instruments.is_body_layer("layer_norm")
    for name in ("dense_0", "rnn_0", "dense_out", "embed_proj", "norm", "normal", "norm_0"):
        assert instruments.is_body_layer(name), name


def test_depth_metrics_first_over_last_body_layer_in_model_order():
    def profile(run_id, epoch, layers, norms):
        return pd.DataFrame(
            {
                "run_id": run_id,
                "epoch": epoch,
                "layer": layers,
                "position": range(len(layers)),
                "grad_norm": norms,
            }
        )

    frame = pd.concat(
        [
            profile("b", 0, ["dense_0", "dense_1", "dense_out"], [0.8, 0.1, 0.4]),
            profile(
                "a",
                2,
                ["embed", "rnn_0", "rnn_0_norm", "rnn_1", "dense_out", "out_norm"],
                [9.0, 0.3, 7.0, 0.5, 1.2, 11.0],
            ),
            profile("c", 0, ["dense_0", "dense_out"], [1.0, 0.0]),  # last norm 0: no ratio
        ],
        ignore_index=True,
    )
    frame = frame.iloc[::-1]  # positions out of order
    out = instruments.depth_metrics(frame)
    assert list(out.columns) == ["run_id", "epoch", "first_layer", "last_layer", "depth_ratio"]
    assert _rows(out, ["run_id", "epoch", "first_layer", "last_layer"]) == [
        ("a", 2, "rnn_0", "dense_out"),
        ("b", 0, "dense_0", "dense_out"),
        ("c", 0, "dense_0", "dense_out"),
    ]
    for got, want in zip(out["depth_ratio"], [0.3 / 1.2, 0.8 / 0.4, np.nan], strict=True):
        assert _close(got, want)
    empty = instruments.depth_metrics(frame.iloc[:0])
    assert empty.empty
    assert list(empty.columns) == ["run_id", "epoch", "first_layer", "last_layer", "depth_ratio"]


# --- unit_metrics --------------------------------------------------------------------------------


def test_unit_metrics_mean_over_layers_per_series_and_quantity():
    units = pd.DataFrame(
        {
            "run_id": pd.Categorical(["b", "b", "a", "a", "a", "a", "a", "a"], ["a", "b", "z"]),
            "epoch": [0, 0, 1, 1, 1, 1, 1, 1],
            "layer": ["rnn_0", "dense_0", "rnn_0", "dense_0", "dense_1", "rnn_0", "rnn_0", "x"],
            "quantity": ["saturated"] * 2 + ["dead"] * 3 + ["saturated"] + ["gate_mean/f"] * 2,
            "value": [0.2, 0.4, 0.0, 0.5, 1.0, 0.1, 0.7, 0.9],
        }
    )
    out = instruments.unit_metrics(units)
    assert list(out.columns) == ["run_id", "epoch", "quantity", "value"]
    # Sorted by key; the run without units ("z") has no row.
    assert [(str(r), e, q) for r, e, q in _rows(out, ["run_id", "epoch", "quantity"])] == [
        ("a", 1, "dead"),
        ("a", 1, "gate_mean/f"),
        ("a", 1, "saturated"),
        ("b", 0, "saturated"),
    ]
    assert list(out["value"]) == pytest.approx([0.5, 0.8, 0.1, 0.3])
    empty = instruments.unit_metrics(units.iloc[:0])
    assert empty.empty and list(empty.columns) == ["run_id", "epoch", "quantity", "value"]


# --- clip_steps and clip_rates -------------------------------------------------------------------


def _long_steps(records, runs=("a", "b", "z")):
    """A long steps table as analysis.tables.load gives it: categorical run_id and quantity."""
    frame = pd.DataFrame(records, columns=["run_id", "step", "quantity", "value"])
    frame["run_id"] = pd.Categorical(frame["run_id"], categories=list(runs))
    frame["quantity"] = pd.Categorical(
        frame["quantity"], categories=["grad/global_norm", "grad/clipped", "grad/cosine"]
    )
    frame["layer"] = pd.Categorical([""] * len(frame), categories=[""])
    return frame[["run_id", "step", "quantity", "layer", "value"]]


def test_clip_steps_of_a_long_table_counts_epochs_from_steps_per_epoch():
    records = []
    for step, (clipped, cosine) in enumerate([(1, 0.6), (0, 1.0), (1, 0.8), (0, 0.9), (1, 0.7)]):
        records += [
            ("a", step, "grad/clipped", clipped),
            ("a", step, "grad/cosine", cosine),
            ("a", step, "grad/global_norm", 100.0 + step),
        ]
    for step in range(3):
        records += [("b", step, "grad/cosine", 0.5), ("b", step, "grad/clipped", 0.0)]
    steps = _long_steps(records[::-1])
    out = instruments.clip_steps(steps, pd.Series({"a": 2, "b": 3}))
    assert list(out.columns) == ["run_id", "step", "epoch", "clipped", "cosine"]
    assert not isinstance(out["run_id"].dtype, pd.CategoricalDtype)
    assert out["epoch"].dtype == np.float64
    assert _rows(out, ["run_id", "step", "epoch", "clipped", "cosine"]) == [
        ("a", 0, 0.0, 1.0, 0.6),
        ("a", 1, 0.0, 0.0, 1.0),
        ("a", 2, 1.0, 1.0, 0.8),
        ("a", 3, 1.0, 0.0, 0.9),  # step 3 of 2 per epoch: epoch 1, not 1.5
        ("a", 4, 2.0, 1.0, 0.7),
        ("b", 0, 0.0, 0.0, 0.5),
        ("b", 1, 0.0, 0.0, 0.5),
        ("b", 2, 0.0, 0.0, 0.5),
    ]
    # Without steps per epoch the epoch is unknown.
    assert instruments.clip_steps(steps)["epoch"].isna().all()
    # Clipping without a cosine record: the cosine is NaN.
    only_clipped = instruments.clip_steps(_long_steps([("a", 0, "grad/clipped", 1.0)]))
    assert list(only_clipped.columns) == ["run_id", "step", "epoch", "clipped", "cosine"]
    assert only_clipped["clipped"].tolist() == [1.0] and only_clipped["cosine"].isna().all()


def test_clip_steps_of_a_wide_table_and_of_tables_without_clipping():
    columns = ["run_id", "step", "epoch", "clipped", "cosine"]
    wide = pd.DataFrame(
        {
            "run_id": "a",
            "grad/global_norm": [5.0, 6.0],
            "step": [0, 1],
            "grad/cosine": [0.9, 1.0],
            "epoch": [0, 0],
            "grad/clipped": [1.0, 0.0],
        }
    )
    out = instruments.clip_steps(wide)
    assert list(out.columns) == columns
    assert _rows(out, columns) == [("a", 0, 0, 1.0, 0.9), ("a", 1, 0, 0.0, 1.0)]
    no_clip = [
        None,
        pd.DataFrame(),
        wide.drop(columns=["grad/clipped", "grad/cosine"]),
        _long_steps([("a", 0, "grad/global_norm", 3.0)]),
    ]
    for steps in no_clip:
        empty = instruments.clip_steps(steps, pd.Series({"a": 1}))
        assert empty.empty and list(empty.columns) == columns


def test_clip_rates_per_run_and_epoch_by_hand():
    frame = pd.DataFrame(
        [
            ("b", 0, 1.0, 0.9),
            ("b", 0, 0.0, 1.0),
            ("b", 0, 1.0, 0.7),
            ("b", 0, 1.0, 0.8),
            ("a", 1, 0.0, 1.0),
            ("a", 1, 0.0, 0.95),
            ("a", 0, 1.0, 0.6),
            ("a", 0, 0.0, 0.99),
            ("a", 0, 0.0, 0.5),
        ],
        columns=["run_id", "epoch", "clipped", "cosine"],
    )
    frame["run_id"] = pd.Categorical(frame["run_id"], categories=["a", "b", "z"])
    frame.insert(1, "step", range(len(frame)))
    out = instruments.clip_rates(frame)
    columns = ["run_id", "epoch", "clip_rate", "cosine_clipped", "cosine_min", "n_steps"]
    assert list(out.columns) == columns
    expected = [
        # run, epoch, clipped / steps, mean cosine of the clipped steps, smallest cosine, steps
        ("a", 0, 1 / 3, 0.6, 0.5, 3),
        ("a", 1, 0.0, np.nan, 0.95, 2),
        ("b", 0, 3 / 4, (0.9 + 0.7 + 0.8) / 3, 0.7, 4),
    ]
    rows = _rows(out, columns)
    assert [(str(r[0]), r[1], r[5]) for r in rows] == [(e[0], e[1], e[5]) for e in expected]
    for row, want in zip(rows, expected, strict=True):
        for got, value in zip(row[2:5], want[2:5], strict=True):
            assert _close(got, value), (row, want)
    empty = instruments.clip_rates(frame.iloc[:0])
    assert empty.empty and list(empty.columns) == columns


# --- run_metrics ---------------------------------------------------------------------------------


def _categorical_runs(frame, runs=("a", "b", "c", "z")):
    return frame.assign(run_id=pd.Categorical(frame["run_id"], categories=list(runs)))


def test_run_metrics_take_epoch_zero_and_each_runs_last_epoch_per_layer():
    timesteps = pd.concat(
        [
            _series([4.0, 2.0, 1.0], "a", 0, "rnn_0"),  # factor 2, ratio 4
            _series([9.0, 3.0, 1.0], "a", 1, "rnn_0"),  # factor 3, ratio 9
            _series([1.0, 1.0, 1.0], "a", 2, "rnn_0"),  # factor 1, ratio 1
            _series([1.0, 5.0], "a", 0, "rnn_1"),  # factor 1/5, ratio 1/5
            _series([0.0, 0.0, 0.0], "a", 2, "rnn_1"),  # no factor, no ratio
            _series([1.0, 3.0], "b", 0, "rnn_0"),  # factor 1/3, ratio 1/3 (its only epoch)
        ],
        ignore_index=True,
    )
    steps = _long_steps([("c", 0, "grad/clipped", 1.0), ("c", 0, "grad/cosine", 0.4)], "abcz")
    tables = SimpleNamespace(
        runs=pd.DataFrame({"run_id": list("abcz"), "steps_per_epoch": [1, 1, 1, 1]}),
        steps=steps,
        timesteps=_categorical_runs(timesteps),
        extra={},
    )
    out = instruments.run_metrics(tables)
    values = [
        f"{value}/{layer}/{when}"
        for value in ("decay_factor", "t0_ratio")
        for layer in ("rnn_0", "rnn_1")
        for when in ("init", "final")
    ]
    assert set(out.columns) == {"run_id", "cosine_clipped", *values}
    # Every run with a record, in one row each; "z" has none.
    assert sorted(out["run_id"].astype(str)) == ["a", "b", "c"]
    out = out.set_index(out["run_id"].astype(str))
    nan = np.nan
    expected = {
        "a": [2.0, 1.0, 0.2, nan, 4.0, 1.0, 0.2, nan],
        "b": [1 / 3, 1 / 3, nan, nan, 1 / 3, 1 / 3, nan, nan],
        "c": [nan] * 8,
    }
    for run, numbers in expected.items():
        for column, want in zip(values, numbers, strict=True):
            assert _close(out.loc[run, column], want), (run, column)
    assert _close(out.loc["c", "cosine_clipped"], 0.4)
    assert out.loc[["a", "b"], "cosine_clipped"].isna().all()
    assert out.columns.name is None


def test_run_metrics_depth_and_unit_health_at_init_and_at_the_last_epoch():
    depth = pd.DataFrame(
        {
            "run_id": ["a"] * 6 + ["b"] * 2,
            "epoch": [0, 0, 1, 1, 3, 3, 0, 0],
            "layer": ["rnn_0", "dense_out"] * 4,
            "position": [0, 1] * 4,
            "grad_norm": [1.0, 4.0, 3.0, 1.0, 2.0, 2.5, 6.0, 2.0],
        }
    )
    units = pd.DataFrame(
        {
            "run_id": ["a"] * 7 + ["b"] * 3,
            "epoch": [0, 0, 3, 3, 3, 3, 3, 0, 1, 1],
            "layer": ["rnn_0", "rnn_0", "rnn_0", "dense_0", "rnn_0", "dense_0", "rnn_0"]
            + ["rnn_0", "rnn_0", "rnn_0"],
            "quantity": ["saturated", "dead", "saturated", "saturated", "dead", "dead", "gate/f"]
            + ["saturated", "saturated", "dead"],
            # b diverged in epoch 1: its probe values there are NaN, and that is its final.
            "value": [0.5, 0.5, 0.2, 0.4, 0.0, 0.3, 0.9, 0.6, np.nan, np.nan],
        }
    )
    tables = SimpleNamespace(
        steps=pd.DataFrame(),
        extra={"depth": _categorical_runs(depth), "units": _categorical_runs(units)},
    )
    out = instruments.run_metrics(tables)
    columns = ["depth_ratio/init", "depth_ratio/final", "saturated/final", "dead/final"]
    assert set(out.columns) == {"run_id", *columns}
    assert list(out["run_id"].astype(str)) == ["a", "b"]
    out = out.set_index(out["run_id"].astype(str))
    expected = {
        # depth: epoch 0 1/4 and epoch 3 2/2.5; units: mean over layers at epoch 3
        "a": [0.25, 0.8, 0.3, 0.15],
        "b": [3.0, 3.0, np.nan, np.nan],
    }
    for run, numbers in expected.items():
        for column, want in zip(columns, numbers, strict=True):
            assert _close(out.loc[run, column], want), (run, column)


def test_run_metrics_of_partial_sources():
    # Timesteps only under extra, no runs table, no cosine record for a clipped run.
    source = SimpleNamespace(
        steps=_long_steps(
            [
                ("a", 0, "grad/clipped", 1.0),
                ("a", 0, "grad/cosine", 0.6),
                ("a", 1, "grad/clipped", 0.0),
                ("a", 1, "grad/cosine", 0.2),
                ("a", 2, "grad/clipped", 1.0),
                ("a", 2, "grad/cosine", 0.8),
                ("b", 0, "grad/clipped", 0.0),
                ("b", 0, "grad/cosine", 0.3),
            ]
        ),
        extra={"timesteps": _series([4.0, 2.0, 1.0], "a")},
    )
    out = instruments.run_metrics(source).set_index("run_id")
    assert out.loc["a", "decay_factor/rnn_0/init"] == pytest.approx(2.0)
    assert out.loc["a", "cosine_clipped"] == pytest.approx((0.6 + 0.8) / 2)
    assert np.isnan(out.loc["b", "cosine_clipped"])
    # A runs table without steps_per_epoch, extra None, timesteps attribute None.
    source.runs = pd.DataFrame({"run_id": ["a", "b"]})
    source.extra, source.timesteps = None, None
    out = instruments.run_metrics(source).set_index("run_id")
    assert list(out.columns) == ["cosine_clipped"]
    assert out.loc["a", "cosine_clipped"] == pytest.approx(0.7)
    # Empty tables and unit quantities other than saturation and dead units give no columns.
    empty = _series([], "a")
    units = pd.DataFrame(
        {"run_id": "a", "epoch": [0], "layer": "rnn_0", "quantity": "gate/f", "value": [0.5]}
    )
    source = SimpleNamespace(
        steps=pd.DataFrame(),
        timesteps=empty,
        extra={"depth": pd.DataFrame(), "units": units, "timesteps": _series([1.0, 2.0])},
    )
    out = instruments.run_metrics(source)
    assert out.empty and list(out.columns) == ["run_id"]
    # Only a wide steps table (one run folder), no other attribute; a run id category without
    # steps ("b") gets no row.
    wide = pd.DataFrame(
        {
            "run_id": pd.Categorical(["a", "a", "a"], categories=["a", "b"]),
            "step": [0, 1, 2],
            "epoch": [0, 0, 1],
            "grad/clipped": [1.0, 0.0, 1.0],
            "grad/cosine": [0.5, 0.1, 0.9],
        }
    )
    out = instruments.run_metrics(SimpleNamespace(steps=wide))
    assert list(out.columns) == ["run_id", "cosine_clipped"]
    assert list(out["run_id"].astype(str)) == ["a"]
    assert out["cosine_clipped"].tolist() == pytest.approx([0.7])


def test_timestep_metrics_fit_one_series_per_example_whatever_the_example_count_per_distance():
    # training/probes.py writes n_examples = how many examples reach each distance; with padding
    # it falls with the distance (here 8, 8, 5, 2, and none at the last) and the series is
    # still one. Every example's gradient is 0.5**d at its d-th step back, so the row's
    # grad_norm (root of the sum of squares over the examples there) is sqrt(n) 0.5**d, and the
    # per-example factor is 0.5 whatever the counts. (Before the fix n_examples was taken as a
    # series key: three rows, decay NaN / NaN / 0.5, t0_ratio 1 / 1 / 0.5.)
    distance = np.arange(5)
    count = np.array([8, 8, 5, 2, 0])
    frame = pd.DataFrame(
        {
            "run_id": "a",
            "epoch": 0,
            "layer": "rnn_0",
            "t": 4 - distance,
            "distance": distance,
            "grad_norm": np.sqrt(count) * 0.5**distance,
            "n_examples": count,
        }
    )
    out = instruments.timestep_metrics(frame)
    assert len(out) == 1 and "n_examples" not in out.columns
    assert out["decay_factor"].iloc[0] == pytest.approx(0.5)
    # The earliest position reached (distance 3, t = 1) over the last (distance 0): 0.5**3.
    assert out["t0_ratio"].iloc[0] == pytest.approx(0.125)
    # The summed norm alone would have decayed faster: sqrt(2/8) 0.5**3 at distance 3.
    summed = instruments.fit_decay(distance[:4], frame["grad_norm"][:4])
    assert summed < 0.45
    # Without the count column (runs recorded before it) the norm is taken as it is.
    plain = instruments.timestep_metrics(frame.drop(columns="n_examples").iloc[:4])
    assert plain["decay_factor"].iloc[0] == pytest.approx(summed)


def test_plain_turns_a_categorical_run_id_into_strings_and_leaves_other_frames():
    categorical = pd.DataFrame({"run_id": pd.Categorical(["b"], categories=["a", "b"])})
    plain = instruments._plain(categorical)
    assert not isinstance(plain["run_id"].dtype, pd.CategoricalDtype)
    assert plain["run_id"].tolist() == ["b"]
    no_run = pd.DataFrame({"epoch": [0]})
    assert instruments._plain(no_run) is no_run
    strings = pd.DataFrame({"run_id": ["a"]})
    assert instruments._plain(strings) is strings
