"""Gradient norms do not underflow: ||dL/dh_t|| of a vanishing sigmoid RNN matches float64 backprop."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ablate.config import RunSettings
from keras_ablate.data import load_dataset
from keras_ablate.models import build_model
from keras_ablate.training.probes import Probe
from keras_ablate.training.step import squared_norm


def test_squared_norm_of_tiny_entries_is_not_zero():
    g = tf.constant(np.full(1000, 3e-25, np.float32))
    assert float(tf.reduce_sum(tf.square(g))) == 0.0  # the float32 trap this guards against
    expected = np.float64(np.float32(3e-25)) * np.sqrt(1000)
    assert np.sqrt(float(squared_norm(g))) == pytest.approx(expected, rel=1e-12, abs=0)


def _bptt_float64(model, x, y):
    """||dL/dh_t|| over batch and units for SimpleRNN(sigmoid) -> Dense(1), MSE, by hand in float64."""
    cell = model.get_layer("rnn_0").cell
    w, u, b = (np.asarray(v, np.float64) for v in (cell.kernel, cell.recurrent_kernel, cell.bias))
    dense = model.get_layer("dense_out")
    w_out, b_out = (np.asarray(v, np.float64) for v in dense.weights)
    x = x.astype(np.float64)
    h = np.zeros((x.shape[0], u.shape[0]))
    hs = []
    for t in range(x.shape[1]):
        h = 1.0 / (1.0 + np.exp(-(x[:, t] @ w + h @ u + b)))
        hs.append(h)
    pred = hs[-1] @ w_out + b_out
    delta = (2.0 / x.shape[0]) * (pred - y.reshape(-1, 1).astype(np.float64)) @ w_out.T
    norms = np.zeros(x.shape[1])
    for t in range(x.shape[1] - 1, -1, -1):
        norms[t] = np.sqrt(np.sum(delta**2))
        delta = (delta * hs[t] * (1.0 - hs[t])) @ u.T  # back through h_t = sigmoid(. + h_{t-1} U)
    return norms


def test_timestep_norms_of_a_vanishing_sigmoid_rnn_match_float64_backprop():
    ds = load_dataset("adding", {"n_train": 8, "n_val": 16, "seq_len": 100})
    settings = RunSettings(architecture="rnn", activation="sigmoid", units=16).model_dump()
    keras.utils.set_random_seed(0)
    model = build_model(settings, ds)
    x, y = ds.x_val[:16], ds.y_val[:16]
    frame = Probe(model, x, y, "mse").measure(0)["timesteps"].set_index("t")
    recorded = frame["grad_norm"].sort_index().to_numpy()
    reference = _bptt_float64(model, x, y)
    # It vanishes far below float32's squaring range (~1e-19 per entry), which used to read 0.
    assert reference.min() < 1e-30
    # Where float32 holds the entries as normal numbers (above ~1e-38), the norms agree.
    normal = reference > 1e-30
    assert normal.sum() > 40
    np.testing.assert_allclose(recorded[normal], reference[normal], rtol=1e-4)
    # Wherever the float32 gradient dL/dh_t itself has a non-zero entry, the record is > 0.
    nonzero = _float32_gradient_is_nonzero(model, x, y)
    assert nonzero.sum() > 50
    assert (recorded[nonzero] > 0).all()


def _float32_gradient_is_nonzero(model, x, y):
    """Per timestep: does the float32 gradient w.r.t. h_t (an explicit unrolled tape) have a non-zero entry?"""
    cell = model.get_layer("rnn_0").cell
    w_out, b_out = model.get_layer("dense_out").weights
    probe = tf.zeros([x.shape[0], x.shape[1], cell.units])
    with tf.GradientTape() as tape:
        tape.watch(probe)
        h = tf.zeros([x.shape[0], cell.units])
        for t in range(x.shape[1]):
            z = x[:, t] @ cell.kernel + h @ cell.recurrent_kernel + cell.bias
            h = tf.sigmoid(z) + probe[:, t]
        loss = tf.reduce_mean(tf.square(h @ w_out + b_out - y.reshape(-1, 1)))
    gradient = tape.gradient(loss, probe).numpy()
    return (gradient != 0).any(axis=(0, 2))
