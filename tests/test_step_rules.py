"""training/step.py rule by rule, on models small enough to differentiate by hand.

The model is input -> (x2 in training only) -> Dense(2) -> Dense(1), linear, mean squared error:
its gradient has a closed form, computed here in numpy (float64), so every recorded number
(loss, norms before and after clipping, the clip flag, cosine, per-layer norms, the update the
optimizer applied) is checked against an independent computation. Each test builds its own
model eagerly (no tf.function trace, no XLA), so one test runs in well under a second.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ablate.training.step import (
    BASE_QUANTITIES,
    InstrumentedModel,
    StopOnDivergence,
    clip_gradients,
    clip_statistics,
    optimizer_clip_kwargs,
    squared_norm,
)

W1 = np.array([[0.5, -1.0], [1.0, 0.25], [-0.5, 2.0]])
B1 = np.array([0.1, -0.2])
W2 = np.array([[1.5], [-0.75]])
B2 = np.array([0.3])
X = np.array([[1.0, 2.0, -1.0], [0.5, -1.5, 2.0], [-2.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
Y = np.array([[1.0], [-2.0], [0.5], [3.0]])


class _DoubledInTraining(keras.layers.Layer):
    """Doubles its input in training only: a train step that ran the model in inference shows."""

    def call(self, x, training=False):
        return x * 2.0 if training else x


def _model(clip="none", learning_rate=0.0, capacity=8, loss="mse", weighted=None, eager=True):
    inputs = keras.Input(shape=(3,))
    h = keras.layers.Dense(2, name="hidden")(_DoubledInTraining(name="double")(inputs))
    out = keras.layers.Dense(1, name="out")(h)
    model = InstrumentedModel(inputs=inputs, outputs=out)
    model.get_layer("hidden").set_weights([W1, B1])
    model.get_layer("out").set_weights([W2, B2])
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate, **optimizer_clip_kwargs(clip)),
        loss=loss,
        weighted_metrics=weighted,
        jit_compile=False,
        run_eagerly=eager,
    )
    model.configure_instruments(clip, capacity)
    return model


def _hand(x, y, w=None):
    """Loss and gradients (W1, b1, W2, b2) of the model above in training (input doubled)."""
    w = np.ones(len(x)) if w is None else np.asarray(w, float)
    x2 = 2.0 * x
    h = x2 @ W1 + B1
    r = h @ W2 + B2 - y
    loss = float(np.sum(w * r[:, 0] ** 2) / len(x))  # Keras: sum of weighted losses / batch size
    d_out = 2.0 * w[:, None] * r / len(x)
    d_h = d_out @ W2.T
    return loss, [x2.T @ d_h, d_h.sum(0), h.T @ d_out, d_out.sum(0)]


def _row(model, k=0):
    cols, rows = model.step_records()
    return dict(zip(cols, rows[k].astype(float), strict=True))


def _norm(arrays):
    return float(np.sqrt(sum(np.sum(np.square(a)) for a in arrays)))


def test_an_unclipped_step_records_the_hand_loss_and_norms_and_applies_the_hand_gradient():
    model = _model(learning_rate=0.1)
    loss, grads = _hand(X, Y)
    out = model.train_on_batch(X, Y, return_dict=True)
    assert model.quantities == [
        "loss",
        "grad/global_norm",
        "grad/global_norm_clipped",
        "grad/clipped",
        "grad/cosine",
        "grad/nonfinite",
        "grad/norm/hidden",
        "grad/norm/out",
        "grad/norm_clipped/hidden",
        "grad/norm_clipped/out",
    ]
    assert list(BASE_QUANTITIES) == model.quantities[:6]
    row = _row(model)
    assert row["loss"] == pytest.approx(loss, rel=1e-6)
    assert out["loss"] == pytest.approx(loss, rel=1e-6)
    assert row["grad/global_norm"] == pytest.approx(_norm(grads), rel=1e-6)
    assert row["grad/global_norm_clipped"] == pytest.approx(_norm(grads), rel=1e-6)
    assert row["grad/norm/hidden"] == pytest.approx(_norm(grads[:2]), rel=1e-6)
    assert row["grad/norm/out"] == pytest.approx(_norm(grads[2:]), rel=1e-6)
    assert row["grad/norm_clipped/hidden"] == pytest.approx(_norm(grads[:2]), rel=1e-6)
    assert row["grad/norm_clipped/out"] == pytest.approx(_norm(grads[2:]), rel=1e-6)
    assert (row["grad/clipped"], row["grad/cosine"], row["grad/nonfinite"]) == (0.0, 1.0, 0.0)
    # SGD: each weight moved by -learning_rate x its gradient.
    after = model.get_layer("hidden").get_weights() + model.get_layer("out").get_weights()
    for a, w, g in zip(after, [W1, B1, W2, B2], grads, strict=True):
        np.testing.assert_allclose(a, w - 0.1 * g, rtol=1e-6, atol=1e-7)
    assert model.first_nonfinite_step is None


def _clip_by_hand(grads, clip):
    kind, c = clip.split(":")
    c = float(c)
    if kind == "norm":
        norms = [np.linalg.norm(g) for g in grads]
        return [g * c / max(n, c) for g, n in zip(grads, norms, strict=True)], max(norms) > c
    if kind == "global_norm":
        n = _norm(grads)
        return [g * min(1.0, c / n) for g in grads], n > c
    return [np.clip(g, -c, c) for g in grads], max(np.abs(g).max() for g in grads) > c


@pytest.mark.parametrize(
    "clip",
    ["norm:1.0", "global_norm:2.0", "value:0.5", "norm:1000", "global_norm:1000", "value:1000"],
)
def test_a_clipped_step_records_the_hand_clipped_norms_flag_and_cosine(clip):
    model = _model(clip, learning_rate=1.0)
    _, grads = _hand(X, Y)
    clipped, fired = _clip_by_hand(grads, clip)
    # The gradient is large enough for the small thresholds and far below 1000.
    assert fired == (not clip.endswith(":1000"))
    model.train_on_batch(X, Y)
    row = _row(model)
    flat_g = np.concatenate([g.ravel() for g in grads])
    flat_c = np.concatenate([g.ravel() for g in clipped])
    cosine = flat_g @ flat_c / (np.linalg.norm(flat_g) * np.linalg.norm(flat_c))
    assert row["grad/clipped"] == float(fired)
    assert row["grad/global_norm"] == pytest.approx(_norm(grads), rel=1e-6)
    assert row["grad/global_norm_clipped"] == pytest.approx(_norm(clipped), rel=1e-6)
    assert row["grad/norm/hidden"] == pytest.approx(_norm(grads[:2]), rel=1e-6)
    assert row["grad/norm/out"] == pytest.approx(_norm(grads[2:]), rel=1e-6)
    assert row["grad/norm_clipped/hidden"] == pytest.approx(_norm(clipped[:2]), rel=1e-6)
    assert row["grad/norm_clipped/out"] == pytest.approx(_norm(clipped[2:]), rel=1e-6)
    assert row["grad/cosine"] == (pytest.approx(cosine, abs=1e-6) if fired else 1.0)
    if clip.startswith("value") and fired:
        assert cosine < 0.999  # value clipping turns the gradient, so cosine is not trivially 1
    # The optimizer clipped the same way (optimizer_clip_kwargs): the update is the clipped gradient.
    after = model.get_layer("hidden").get_weights() + model.get_layer("out").get_weights()
    for a, w, g in zip(after, [W1, B1, W2, B2], clipped, strict=True):
        np.testing.assert_allclose(a, w - g, rtol=1e-5, atol=1e-6)


def test_the_traced_train_step_records_the_same_numbers_as_the_hand_gradient():
    model = _model("value:0.5", learning_rate=0.0, eager=False)
    _, grads = _hand(X, Y)
    clipped, _ = _clip_by_hand(grads, "value:0.5")
    model.train_on_batch(X, Y)
    model.train_on_batch(X, Y)
    _, rows = model.step_records()
    assert rows.shape == (2, 10)
    for k in range(2):
        row = _row(model, k)
        assert row["grad/global_norm"] == pytest.approx(_norm(grads), rel=1e-6)
        assert row["grad/global_norm_clipped"] == pytest.approx(_norm(clipped), rel=1e-6)
        assert row["grad/clipped"] == 1.0


def test_sample_weights_reach_the_loss_and_the_metrics():
    w = np.array([1.0, 0.0, 2.0, 0.5])
    model = _model(learning_rate=0.0, weighted=["mae"])
    loss, grads = _hand(X, Y, w)
    out = model.train_on_batch(X, Y, sample_weight=w, return_dict=True)
    row = _row(model)
    assert row["loss"] == pytest.approx(loss, rel=1e-6)
    assert row["grad/global_norm"] == pytest.approx(_norm(grads), rel=1e-6)
    pred = (2.0 * X @ W1 + B1) @ W2 + B2
    mae = np.abs(pred - Y)[:, 0]
    assert out["mae"] == pytest.approx(np.sum(w * mae) / np.sum(w), rel=1e-6)


def test_the_epoch_loss_weights_each_batch_by_its_size():
    # Learning rate 0: both batches see the initial weights, so each batch loss is the hand one.
    model = _model(learning_rate=0.0)
    first, _ = _hand(X[:3], Y[:3])
    second, _ = _hand(X[3:], Y[3:])
    history = model.fit(X, Y, batch_size=3, epochs=1, shuffle=False, verbose=0)
    assert history.history["loss"][0] == pytest.approx((3 * first + 1 * second) / 4, rel=1e-6)
    cols, rows = model.step_records()
    np.testing.assert_allclose(rows[:, cols.index("loss")], [first, second], rtol=1e-6)


def test_records_keep_the_steps_taken_and_the_last_row_takes_the_overflow():
    model = _model(learning_rate=0.0, capacity=2)
    losses = [_hand(X[k : k + 1], Y[k : k + 1])[0] for k in range(4)]
    assert len(set(np.round(losses, 6))) == 4
    model.train_on_batch(X[:1], Y[:1])
    cols, rows = model.step_records()
    assert rows.shape == (1, 10)
    for k in range(1, 4):
        model.train_on_batch(X[k : k + 1], Y[k : k + 1])
    cols, rows = model.step_records()
    # Capacity 2: row 0 is step 0, row 1 holds the latest step (3).
    np.testing.assert_allclose(rows[:, cols.index("loss")], [losses[0], losses[3]], rtol=1e-6)
    model.reset_instruments()
    assert model.step_records()[1].shape == (0, 10)
    assert np.isnan(model._records.numpy()).all()
    assert model.first_nonfinite_step is None
    model.train_on_batch(X[2:3], Y[2:3])
    np.testing.assert_allclose(model.step_records()[1][:, 0], [losses[2]], rtol=1e-6)


def _sqrt_loss(y, p):
    # Zero at p == y (finite), but its gradient there is 0 x inf = NaN.
    return tf.reduce_mean(tf.sqrt(tf.abs(p - y)), axis=-1)


def _inf_loss(y, p):
    # An infinite constant on a finite loss: the loss is inf, its gradient stays finite.
    return tf.reduce_mean(tf.square(p - y), axis=-1) + np.inf


def test_a_finite_loss_with_a_nonfinite_gradient_is_nonfinite():
    model = _model(loss=_sqrt_loss)
    x = np.array([[1.0, 0.0, 0.0]])
    y = model(x, training=True).numpy()  # the prediction itself (Keras's forward pass)
    model.train_on_batch(x, y)
    row = _row(model)
    assert row["loss"] == 0.0 and not np.isfinite(row["grad/global_norm"])
    assert row["grad/nonfinite"] == 1.0
    assert model.first_nonfinite_step == 0


def test_an_infinite_loss_with_a_finite_gradient_is_nonfinite():
    model = _model(loss=_inf_loss)
    _, grads = _hand(X, Y)
    model.train_on_batch(X, Y)
    row = _row(model)
    assert row["loss"] == np.inf
    assert row["grad/global_norm"] == pytest.approx(_norm(grads), rel=1e-6)
    assert row["grad/nonfinite"] == 1.0


def test_the_first_nonfinite_step_is_the_first_one_and_stays():
    model = _model(learning_rate=0.1)
    bad = X.copy()
    bad[0, 0] = np.nan
    model.train_on_batch(X, Y)  # step 0 finite
    assert model.first_nonfinite_step is None
    for _ in range(2):  # steps 1 and 2: NaN input (and NaN weights after step 1)
        model.train_on_batch(bad, Y)
    assert model.first_nonfinite_step == 1
    cols, rows = model.step_records()
    np.testing.assert_array_equal(rows[:, cols.index("grad/nonfinite")], [0.0, 1.0, 1.0])
    # From the very first step: 0, not overwritten by the next non-finite step.
    model = _model(learning_rate=0.1)
    for _ in range(2):
        model.train_on_batch(bad, Y)
    assert model.first_nonfinite_step == 0


def test_stop_on_divergence_stops_fit_after_the_first_nonfinite_step_only():
    data = np.repeat(X, 2, axis=0), np.repeat(Y, 2, axis=0)  # 8 rows: 4 batches of 2
    model = _model(learning_rate=0.0)
    model.fit(*data, batch_size=2, epochs=1, verbose=0, callbacks=[StopOnDivergence()])
    assert model.step_records()[1].shape[0] == 4
    model = _model(learning_rate=0.0, loss=_inf_loss)
    model.fit(*data, batch_size=2, epochs=1, verbose=0, callbacks=[StopOnDivergence()])
    assert model.step_records()[1].shape[0] == 1


def test_layer_columns_follow_the_layers_input_side_first():
    inputs = keras.Input(shape=(3,))
    out = keras.layers.Dense(1, name="a_out")(keras.layers.Dense(2, name="z_in")(inputs))
    model = InstrumentedModel(inputs=inputs, outputs=out)
    model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
    model.configure_instruments("none", 1)
    assert model.quantities[6:] == [
        "grad/norm/z_in",
        "grad/norm/a_out",
        "grad/norm_clipped/z_in",
        "grad/norm_clipped/a_out",
    ]


class _Tied(keras.layers.Layer):
    """Maps back through another layer's kernel (tied weights): it owns no variable itself."""

    def __init__(self, dense, **kwargs):
        super().__init__(**kwargs)
        self.dense = dense

    def call(self, x):
        return x @ tf.transpose(self.dense.kernel)


def test_a_variable_shared_by_two_layers_belongs_to_the_first_layer_only():
    inputs = keras.Input(shape=(3,))
    encode = keras.layers.Dense(2, name="encode")
    out = keras.layers.Dense(1, name="out")(_Tied(encode, name="tied")(encode(inputs)))
    model = InstrumentedModel(inputs=inputs, outputs=out)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", run_eagerly=True)
    model.configure_instruments("none", 2)
    assert model.get_layer("tied").trainable_variables  # it sees encode's kernel and bias
    assert model.quantities[6:] == [
        "grad/norm/encode",
        "grad/norm/out",
        "grad/norm_clipped/encode",
        "grad/norm_clipped/out",
    ]
    model.train_on_batch(X, Y)
    assert np.isfinite(model.step_records()[1]).all()


def _g(*arrays):
    return [tf.constant(np.asarray(a, np.float32)) for a in arrays]


def test_clip_gradients_by_hand_and_at_the_threshold():
    g = _g([3.0, 4.0], [[0.0, -12.0]])  # norms 5 and 12, global 13, largest entry 12
    clipped, fired = clip_gradients(g, "none")
    assert clipped is g and not bool(fired)
    clipped, fired = clip_gradients(g, "norm:6")
    np.testing.assert_allclose(clipped[0].numpy(), [3.0, 4.0])
    np.testing.assert_allclose(clipped[1].numpy(), [[0.0, -6.0]])
    assert bool(fired)
    clipped, fired = clip_gradients(g, "norm:4")  # each variable rescaled, not cut entry by entry
    np.testing.assert_allclose(clipped[0].numpy(), [2.4, 3.2], rtol=1e-6)
    np.testing.assert_allclose(clipped[1].numpy(), [[0.0, -4.0]], rtol=1e-6)
    assert bool(fired)
    clipped, fired = clip_gradients(g, "global_norm:6.5")
    np.testing.assert_allclose(clipped[0].numpy(), [1.5, 2.0], rtol=1e-6)
    np.testing.assert_allclose(clipped[1].numpy(), [[0.0, -6.0]], rtol=1e-6)
    assert bool(fired)
    clipped, fired = clip_gradients(g, "value:3.5")
    np.testing.assert_allclose(clipped[0].numpy(), [3.0, 3.5])
    np.testing.assert_allclose(clipped[1].numpy(), [[0.0, -3.5]])
    assert bool(fired)
    # A norm or entry exactly at the threshold is not clipped (strictly greater fires).
    for clip in ("norm:12", "global_norm:13", "value:12"):
        clipped, fired = clip_gradients(g, clip)
        assert not bool(fired), clip
        np.testing.assert_allclose(clipped[1].numpy(), [[0.0, -12.0]], rtol=1e-6)
    # Below the threshold nothing changes.
    clipped, fired = clip_gradients(g, "global_norm:26")
    np.testing.assert_allclose(clipped[0].numpy(), [3.0, 4.0], rtol=1e-6)
    assert not bool(fired)


def test_a_nonfinite_global_norm_makes_every_clipped_gradient_nan():
    clipped, fired = clip_gradients(_g([np.inf, 1.0], [2.0]), "global_norm:1")
    assert np.isnan(clipped[0].numpy()).all() and np.isnan(clipped[1].numpy()).all()
    assert bool(fired)
    squares = [tf.constant(np.inf, tf.float64), tf.constant(4.0, tf.float64)]
    sq_c, dot, fired = clip_statistics(_g([np.inf, 1.0], [2.0]), squares, "global_norm:1")
    assert np.isnan([float(s) for s in sq_c]).all() and np.isnan(float(dot))


def _squares(grads):
    return [
        tf.constant(float(np.sum(np.square(g.numpy().astype(np.float64)))), tf.float64)
        for g in grads
    ]


@pytest.mark.parametrize(
    "clip, g",
    [
        (clip, [[3.0, 4.0], [[0.0, -12.0]]])
        for clip in ("none", "norm:6", "norm:12", "global_norm:6.5", "global_norm:13")
        + ("value:3.5", "value:12")
    ]
    # Entries and scales that float32 cannot hold exactly: norm and global_norm statistics
    # are float64 (closed form from float64 squares), to 1e-12 of the float64 hand values.
    + [(clip, [[0.1, 0.2], [0.3]]) for clip in ("norm:0.2", "global_norm:0.25", "value:0.125")],
)
def test_clip_statistics_equal_the_hand_clipped_gradient(clip, g):
    g = _g(*g)
    raw = [x.numpy().astype(np.float64) for x in g]
    if clip == "none":
        clipped, fired = raw, False
    else:
        clipped, fired = _clip_by_hand(raw, clip)
    sq_c, dot, flag = clip_statistics(g, _squares(g), clip)
    for s, c in zip(sq_c, clipped, strict=True):
        assert s.dtype == tf.float64
        assert float(s) == pytest.approx(np.sum(c**2), rel=1e-12)
    expected_dot = sum(float(np.sum(a * b)) for a, b in zip(raw, clipped, strict=True))
    assert float(dot) == pytest.approx(expected_dot, rel=1e-12)
    assert bool(flag) == fired


def test_squared_norm_of_indexed_slices_counts_repeated_rows_once_summed():
    # Rows 0 and 0 again: dense row 0 is [1+3, 2+4] = [4, 6]; row 2 is [0, 1].
    slices = tf.IndexedSlices(
        tf.constant([[1.0, 2.0], [3.0, 4.0], [0.0, 1.0]]),
        tf.constant([0, 0, 2]),
        tf.constant([3, 2]),
    )
    value = squared_norm(slices)
    assert value.dtype == tf.float64
    assert float(value) == 16.0 + 36.0 + 1.0


def test_optimizer_clip_kwargs_name_the_keras_argument():
    assert optimizer_clip_kwargs("none") == {}
    assert optimizer_clip_kwargs("value:0.5") == {"clipvalue": 0.5}
    assert optimizer_clip_kwargs("norm:1") == {"clipnorm": 1.0}
    assert optimizer_clip_kwargs("global_norm:5") == {"global_clipnorm": 5.0}


def _huge_model(clip):
    """y = w x, w = 1, x = 1e10, target 0: loss 1e20 (finite in float32), dL/dw = 2e20, whose
    float32 square (4e40) overflows: Keras's clipping norm is inf."""
    inputs = keras.Input(shape=(1,))
    out = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones", name="out")(inputs)
    model = InstrumentedModel(inputs=inputs, outputs=out)
    model.compile(
        optimizer=keras.optimizers.SGD(1e-30, **optimizer_clip_kwargs(clip)),
        loss="mse",
        jit_compile=False,
        run_eagerly=True,
    )
    model.configure_instruments(clip, 4)
    return model


@pytest.mark.parametrize("clip", ["norm:1", "global_norm:1"])
def test_clip_statistics_follow_keras_where_its_float32_norm_overflows(clip):
    # What Keras itself applies to g = [3e19, 4e19] (float64 norm 5e19, float32 square sum inf).
    g = tf.constant([3e19, 4e19], tf.float32)
    var = tf.Variable([0.0, 0.0])
    keras.optimizers.SGD(1.0, **optimizer_clip_kwargs(clip)).apply([g], [var])
    applied = -var.numpy().astype(np.float64)
    sq_c, dot, fired = clip_statistics([g], [squared_norm(g)], clip)
    assert bool(fired)
    if clip == "norm:1":
        assert applied.tolist() == [0.0, 0.0]  # Keras: g * 1 / max(inf, 1) = 0
        assert float(sq_c[0]) == 0.0 and float(dot) == 0.0
    else:
        assert np.isnan(applied).all()  # Keras: 1 * min(1/inf, 1) + (inf - inf) = NaN
        assert np.isnan(float(sq_c[0])) and np.isnan(float(dot))
    # Below the overflow the float64 closed form holds: [3e18, 4e18] clips to norm 1.
    small = tf.constant([3e18, 4e18], tf.float32)
    sq_c, _, _ = clip_statistics([small], [squared_norm(small)], clip)
    assert float(sq_c[0]) == pytest.approx(1.0)


def test_a_step_whose_global_clipping_overflows_is_the_first_nonfinite_step():
    x, y = np.array([[1e10]], np.float32), np.array([[0.0]], np.float32)
    model = _huge_model("global_norm:1")
    model.train_on_batch(x, y)
    assert np.isnan(model.get_layer("out").kernel.numpy()).all()  # Keras applied NaN
    names, rows = model.step_records()
    row = dict(zip(names, rows[0], strict=True))
    assert row["loss"] == pytest.approx(1e20, rel=1e-6)  # finite
    assert row["grad/global_norm"] == pytest.approx(2e20, rel=1e-6)  # finite in float64
    assert row["grad/nonfinite"] == 1.0 and model.first_nonfinite_step == 0
    # norm clipping zeroes the overflowing variable instead: a finite (null) step.
    model = _huge_model("norm:1")
    model.train_on_batch(x, y)
    assert model.get_layer("out").kernel.numpy().tolist() == [[1.0]]
    names, rows = model.step_records()
    row = dict(zip(names, rows[0], strict=True))
    assert row["grad/global_norm_clipped"] == 0.0 and row["grad/nonfinite"] == 0.0
    assert model.first_nonfinite_step is None
