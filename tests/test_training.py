"""The instrumented train step: recorded norms vs an independent GradientTape, clipping, divergence."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from keras_ablate.config import RunSettings, RunSpec, make_run_id
from keras_ablate.data import load_dataset
from keras_ablate.training.loop import add_clip_fraction, build_instrumented, fit_data, run_one
from keras_ablate.training.step import clip_gradients

DATA = {"name": "ngram", "options": {"n_train": 64, "n_val": 16, "seq_len": 10, "vocab_size": 20}}


def _settings(**overrides) -> dict:
    base = {
        "units": 6,
        "embed_dim": 5,
        "filters": 4,
        "batch_size": 64,
        "epochs": 1,
        "jit_compile": False,
    }
    return RunSettings(**{**base, **overrides}).model_dump(mode="json")


def _spec(seed=0, data=DATA, **overrides) -> RunSpec:
    settings = _settings(**overrides)
    return RunSpec("t", make_run_id(settings, data, seed), settings, data, seed, {})


def _dataset():
    return load_dataset(DATA["name"], DATA["options"])


def _hand_gradients(model, x, y):
    """Gradient of mean binary cross-entropy, by a GradientTape of our own, grouped by layer."""
    with tf.GradientTape() as tape:
        pred = model(x, training=True)
        loss = keras.losses.binary_crossentropy(tf.reshape(tf.cast(y, tf.float32), (-1, 1)), pred)
        loss = tf.reduce_mean(loss)
    variables = model.trainable_variables
    grads = [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, variables)]
    by_var = {id(v): g for v, g in zip(variables, grads, strict=True)}
    per_layer = {}
    for layer in model.layers:
        sq = sum(
            float(np.sum(by_var[id(v)].astype(np.float64) ** 2)) for v in layer.trainable_variables
        )
        if layer.trainable_variables:
            per_layer[layer.name] = np.sqrt(sq)
    return float(loss), grads, per_layer


@pytest.mark.parametrize("architecture", ["cnn", "lstm", "mlp"])
def test_recorded_norms_equal_an_independent_gradient_tape(architecture):
    ds = _dataset()
    settings = _settings(architecture=architecture, dropout=0.0)
    model = build_instrumented(settings, ds, seed=0, capacity=4)
    x, y = ds.x_train, ds.y_train
    loss, grads, per_layer = _hand_gradients(model, x, y)
    model.train_on_batch(x, y)
    cols, rows = model.step_records()
    row = dict(zip(cols, rows[0], strict=True))
    np.testing.assert_allclose(row["loss"], loss, rtol=1e-5)
    global_norm = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads))
    np.testing.assert_allclose(row["grad/global_norm"], global_norm, rtol=1e-5)
    assert row["grad/global_norm_clipped"] == pytest.approx(row["grad/global_norm"], rel=1e-6)
    assert row["grad/clipped"] == 0 and row["grad/cosine"] == 1 and row["grad/nonfinite"] == 0
    assert set(per_layer) == {c.split("/", 2)[2] for c in cols if c.startswith("grad/norm/")}
    for name, value in per_layer.items():
        np.testing.assert_allclose(row[f"grad/norm/{name}"], value, rtol=1e-5)
    # Layer names are the stable ones the report lines up across arms.
    assert "embed" in per_layer and "dense_out" in per_layer


def _weights(model):
    return [v.numpy().copy() for v in model.trainable_variables]


@pytest.mark.parametrize(
    "clip", ["norm:0.05", "global_norm:0.05", "value:0.001", "global_norm:1000"]
)
def test_clip_flag_and_post_clip_norm_match_what_the_optimizer_applied(clip):
    # With SGD at learning rate 1 the weight change is exactly minus the clipped gradient,
    # so Keras's own clipping is the independent reference for our recorded numbers.
    ds = _dataset()
    settings = _settings(architecture="lstm", clip=clip, optimizer="sgd", learning_rate=1.0)
    model = build_instrumented(settings, ds, seed=0, capacity=4)
    x, y = ds.x_train, ds.y_train
    _, raw, _ = _hand_gradients(model, x, y)
    before = _weights(model)
    model.train_on_batch(x, y)
    applied = [b - a for b, a in zip(before, _weights(model), strict=True)]
    cols, rows = model.step_records()
    row = dict(zip(cols, rows[0], strict=True))
    applied_norm = np.sqrt(sum(np.sum(a.astype(np.float64) ** 2) for a in applied))
    np.testing.assert_allclose(row["grad/global_norm_clipped"], applied_norm, rtol=1e-4)
    kind, c = clip.split(":")
    c = float(c)
    raw_flat = np.concatenate([g.ravel() for g in raw])
    expected_fired = {
        "norm": any(np.linalg.norm(g) > c for g in raw),
        "global_norm": np.linalg.norm(raw_flat) > c,
        "value": np.abs(raw_flat).max() > c,
    }[kind]
    assert bool(row["grad/clipped"]) == expected_fired
    if kind == "global_norm":
        assert row["grad/global_norm_clipped"] == pytest.approx(
            min(np.linalg.norm(raw_flat), c), rel=1e-5
        )
    if kind == "value":
        # Weight differences carry float32 rounding of the weights (~1e-8 absolute).
        assert max(np.abs(a).max() for a in applied) <= c + 1e-7
    applied_flat = np.concatenate([a.ravel() for a in applied])
    cosine = raw_flat @ applied_flat / (np.linalg.norm(raw_flat) * np.linalg.norm(applied_flat))
    np.testing.assert_allclose(row["grad/cosine"], cosine, atol=1e-5)
    # Per layer, before and after clipping: the raw tape and the update the optimizer applied.
    by_var = {
        id(v): (g, a) for v, g, a in zip(model.trainable_variables, raw, applied, strict=True)
    }
    clipped_somewhere = False
    for layer in model.layers:
        if not layer.trainable_variables:
            continue
        pairs = [by_var[id(v)] for v in layer.trainable_variables]
        raw_norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g, _ in pairs))
        applied_norm = np.sqrt(sum(np.sum(a.astype(np.float64) ** 2) for _, a in pairs))
        np.testing.assert_allclose(row[f"grad/norm/{layer.name}"], raw_norm, rtol=1e-5)
        np.testing.assert_allclose(
            row[f"grad/norm_clipped/{layer.name}"], applied_norm, rtol=1e-4, atol=1e-7
        )
        clipped_somewhere |= applied_norm < 0.99 * raw_norm
    assert clipped_somewhere == expected_fired  # so the two columns were told apart above


def test_clip_fraction_is_the_share_of_an_epochs_steps_that_clipped():
    steps = pd.DataFrame(
        {"epoch": [0, 0, 0, 0, 1, 1, 1, 1], "grad/clipped": [1.0, 0, 0, 0, 1, 1, 1, 0]}
    )
    history = pd.DataFrame({"epoch": [1, 2], "train/loss": [0.5, 0.4]})
    out = add_clip_fraction(history, steps)
    np.testing.assert_array_equal(out["train/clip_fraction"], [0.25, 0.75])


def test_clip_gradients_matches_numpy_formulas():
    g = [tf.constant([3.0, 4.0]), tf.constant([[0.0, 12.0]])]  # norms 5 and 12, global 13
    clipped, fired = clip_gradients(g, "norm:6")
    np.testing.assert_allclose(clipped[0].numpy(), [3.0, 4.0])
    np.testing.assert_allclose(clipped[1].numpy(), [[0.0, 6.0]])
    assert bool(fired)
    clipped, fired = clip_gradients(g, "global_norm:6.5")
    np.testing.assert_allclose(clipped[0].numpy(), [1.5, 2.0], rtol=1e-6)
    assert bool(fired)
    clipped, fired = clip_gradients(g, "value:3.5")
    np.testing.assert_allclose(clipped[1].numpy(), [[0.0, 3.5]])
    assert bool(fired)
    _, fired = clip_gradients(g, "global_norm:13.5")
    assert not bool(fired)


def test_huge_learning_rate_is_recorded_as_diverged_with_its_step():
    spec = _spec(
        architecture="rnn",
        activation="relu",
        optimizer="sgd",
        learning_rate=1e12,
        epochs=3,
        batch_size=16,
    )
    record = run_one(spec)
    assert record.summary["status"] == "diverged"
    step = record.summary["diverged_step"]
    assert step is not None and step >= 0
    steps = record.tables["steps"]
    assert steps["grad/nonfinite"].iloc[step] == 1
    assert (steps["grad/nonfinite"].iloc[:step] == 0).all()
    # It stopped right there instead of training on for three epochs.
    assert len(steps) == step + 1


def test_same_settings_and_seed_give_identical_records():
    a, b = run_one(_spec(architecture="gru")), run_one(_spec(architecture="gru"))
    np.testing.assert_array_equal(a.tables["steps"].to_numpy(), b.tables["steps"].to_numpy())
    assert a.tables["history"].equals(b.tables["history"])
    c = run_one(_spec(seed=1, architecture="gru"))
    assert not np.array_equal(
        a.tables["steps"]["loss"].to_numpy(), c.tables["steps"]["loss"].to_numpy()
    )


def test_fit_data_trains_on_the_same_batches_as_fit_on_arrays():
    """The suite's pipeline (autotuning off) must give the records of fit(x, y, shuffle=True) exactly."""
    ds = _dataset()
    settings = _settings(architecture="cnn", batch_size=16)
    records = {}
    for how in ("arrays", "pipeline", "unshuffled"):
        model = build_instrumented(settings, ds, seed=3, capacity=12)
        if how == "pipeline":
            data = fit_data(ds, 16)
            assert data["x"].options().autotune.enabled is False
            model.fit(**data, epochs=3, shuffle=False, verbose=0)
        else:
            model.fit(
                ds.x_train,
                ds.y_train,
                batch_size=16,
                epochs=3,
                shuffle=how == "arrays",
                validation_data=(ds.x_val, ds.y_val),
                verbose=0,
            )
        records[how] = (model.step_records()[1], _weights(model))
    np.testing.assert_array_equal(records["arrays"][0], records["pipeline"][0])
    for a, b in zip(records["arrays"][1], records["pipeline"][1], strict=True):
        np.testing.assert_array_equal(a, b)
    # Batch order matters to these records, so the comparison above could tell pipelines apart.
    assert not np.array_equal(records["arrays"][0], records["unshuffled"][0])


def test_two_runs_never_share_weights():
    ds = _dataset()
    settings = _settings(architecture="lstm")
    m1 = build_instrumented(settings, ds, seed=0, capacity=4)
    m2 = build_instrumented(settings, ds, seed=0, capacity=4)
    assert not {id(v) for v in m1.variables} & {id(v) for v in m2.variables}
    before = _weights(m2)
    m1.fit(ds.x_train, ds.y_train, epochs=1, verbose=0)
    for w, v in zip(before, _weights(m2), strict=True):
        np.testing.assert_array_equal(w, v)
    # Same seed, fresh build: the starting points are equal, not shared.
    for w, v in zip(
        before, _weights(build_instrumented(settings, ds, seed=0, capacity=4)), strict=True
    ):
        np.testing.assert_array_equal(w, v)


def test_adding_task_is_regression_with_the_right_constant_baseline():
    ds = load_dataset("adding", {"n_train": 4000, "n_val": 2000, "seq_len": 20})
    mse = float(np.mean((ds.y_val - 1.0) ** 2))
    assert ds.task == "regression" and ds.x_train.shape == (4000, 20, 2)
    assert mse == pytest.approx(1 / 6, abs=0.01)
    # Exactly two markers per sequence, one in each half.
    markers = ds.x_train[..., 1]
    assert (markers.sum(axis=1) == 2).all()
    assert (markers[:, :10].sum(axis=1) == 1).all()


def test_summary_records_chance_and_majority_accuracy_of_the_data():
    data = {
        "name": "recall",
        "options": {"n_classes": 4, "n_train": 64, "n_val": 40, "seq_len": 4, "vocab_size": 10},
    }
    record = run_one(_spec(data=data, architecture="rnn"))
    y_val = load_dataset(data["name"], data["options"]).y_val
    counts = np.bincount(y_val, minlength=4)
    baseline = record.summary["baseline"]
    assert baseline["chance"] == 0.25 and baseline["n_classes"] == 4 and baseline["n_val"] == 40
    assert baseline["majority_val"] == pytest.approx(counts.max() / 40)


@pytest.mark.parametrize("architecture", ["cnn", "gru"])
def test_train_step_is_traced_once_per_run(architecture, monkeypatch):
    # Keras creates optimizer slots inside the first trace unless they exist already, and a
    # tf.function that creates variables is traced twice; build_state creates them first.
    from keras_ablate.training.step import InstrumentedModel

    traces = []
    original = InstrumentedModel.train_step

    def counted(self, data):
        traces.append(1)
        return original(self, data)

    monkeypatch.setattr(InstrumentedModel, "train_step", counted)
    settings = _settings(architecture=architecture, epochs=2, batch_size=16)
    ds = _dataset()
    model = build_instrumented(settings, ds, seed=0, capacity=8)
    slots = len(model.optimizer.variables)
    model.fit(**fit_data(ds, 16), epochs=2, verbose=0, shuffle=False)
    assert len(traces) == 1
    assert len(model.optimizer.variables) == slots  # every slot existed before the first step
