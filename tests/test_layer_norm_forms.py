"""Recurrent layer normalization: each level computes the formula its docs name, checked against numpy.

`layer` is Ba et al.'s (2016) LSTM form: LN(Wx) and LN(Uh) normalized separately per gate block,
each with its own gain, and h = o * tanh(LN(c)); `layer_sum` normalizes the summed Wx + Uh.
The reference below is written from those equations, not from the cell's code.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_ablate.config import RunSettings
from keras_ablate.models.cells import ZooRNN
from keras_ablate.models.recurrent import recurrent_layer

UNITS, STEPS, FEATURES, BATCH = 5, 6, 4, 3
EPS = 1e-3


def _ln(v):
    """Layer norm over the last axis, no gain or shift."""
    return (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + EPS)


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _reference(cell, x, weights):
    """Run the equations of Ba et al. / the sum form in float64 for kind rnn, lstm or gru."""
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    n = UNITS
    names = [*cell.gate_names, "candidate"]
    block = {name: slice(j * n, (j + 1) * n) for j, name in enumerate(names)}
    h = np.zeros((BATCH, n))
    c = np.zeros((BATCH, n))
    outputs = []
    for t in range(x.shape[1]):
        wx = x[:, t].astype(np.float64) @ w["kernel"]
        uh = h @ w["recurrent_kernel"]

        def pre(name, reset=None, wx=wx, uh=uh):
            s = block[name]
            recurrent = uh[:, s]
            if cell.normalization == "layer":
                term_h = w["recurrent_gain"][s] * _ln(recurrent)
                term_h = term_h if reset is None else reset * term_h
                return w["input_gain"][s] * _ln(wx[:, s]) + term_h + w["bias"][s]
            summed = wx[:, s] + (recurrent if reset is None else reset * recurrent)
            return w["gain"][s] * _ln(summed) + w["bias"][s]

        if cell.kind == "rnn":
            h = np.tanh(pre("candidate"))
        elif cell.kind == "gru":
            z, r = _sigmoid(pre("update")), _sigmoid(pre("reset"))
            h = z * h + (1 - z) * np.tanh(pre("candidate", reset=r))
        else:
            i, f, o = (_sigmoid(pre(g)) for g in ("input", "forget", "output"))
            c = f * c + i * np.tanh(pre("candidate"))
            if cell.normalization == "layer":
                h = o * np.tanh(w["cell_gain"] * _ln(c) + w["cell_bias"])
            else:
                h = o * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, axis=1)


@pytest.mark.parametrize("normalization", ["layer", "layer_sum"])
@pytest.mark.parametrize("architecture", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("loop", ["projected", "plain"])
def test_layer_norm_levels_match_their_equations(architecture, normalization, loop):
    settings = RunSettings(
        architecture=architecture, normalization=normalization, units=UNITS
    ).model_dump()
    layer = recurrent_layer(settings, "rnn_0", return_sequences=True)
    layer.build((None, STEPS, FEATURES))
    cell = layer.cell
    rng = np.random.default_rng(3)
    # Random gains and biases, so a gain applied to the wrong term (or not at all) shows.
    for variable in cell.trainable_variables:
        variable.assign(rng.normal(0.0, 0.7, variable.shape).astype("float32"))
    weights = {v.name: v.numpy() for v in cell.trainable_variables}
    expected_names = {"kernel", "recurrent_kernel", "bias"}
    expected_names |= (
        {"input_gain", "recurrent_gain"}
        | ({"cell_gain", "cell_bias"} if architecture == "lstm" else set())
        if normalization == "layer"
        else {"gain"}
    )
    assert set(weights) == expected_names
    x = rng.normal(0.0, 1.5, (BATCH, STEPS, FEATURES)).astype("float32")
    runner = ZooRNN if loop == "projected" else keras.layers.RNN
    out = np.asarray(runner(cell, return_sequences=True)(x))
    np.testing.assert_allclose(out, _reference(cell, x, weights), rtol=1e-5, atol=1e-5)


def test_the_two_forms_differ_inside_an_lstm():
    # Same weights, the two levels must be different models (else the ablation measures nothing).
    outs = []
    for normalization in ("layer", "layer_sum"):
        settings = RunSettings(architecture="lstm", normalization=normalization, units=UNITS)
        layer = recurrent_layer(settings.model_dump(), "rnn_0", return_sequences=True)
        keras.utils.set_random_seed(0)
        layer.build((None, STEPS, FEATURES))
        x = np.random.default_rng(1).normal(0, 1, (BATCH, STEPS, FEATURES)).astype("float32")
        outs.append(np.asarray(layer(x)))
    assert np.abs(outs[0] - outs[1]).max() > 1e-2
