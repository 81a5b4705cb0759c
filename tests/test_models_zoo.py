"""The model zoo: LSTM gate variants, in-cell normalization, maxout, initializations, checked against numpy."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_ablate.config import RunSettings, parse_experiment
from keras_ablate.data import load_dataset
from keras_ablate.errors import ConfigError
from keras_ablate.models import build_model
from keras_ablate.models.cells import VARIANTS, ZooRNN, gate_values
from keras_ablate.models.initializers import spectral_radius
from keras_ablate.models.layers import Maxout
from keras_ablate.models.recurrent import recurrent_layer
from keras_ablate.training.loop import build_instrumented

NEW_LSTMS = ["lstm_nig", "lstm_nfg", "lstm_nog", "lstm_cifg", "lstm_as_rnn"]
UNITS, STEPS, FEATURES, BATCH = 4, 8, 5, 6


def _settings(**overrides) -> dict:
    base = dict(
        units=UNITS,
        embed_dim=3,
        filters=3,
        kernel_sizes=(2, 3),
        depth=2,
        batch_size=16,
        jit_compile=False,
    )
    return RunSettings(**{**base, **overrides}).model_dump(mode="json")


def _dataset():
    return load_dataset("ngram", {"n_train": 16, "n_val": 8, "seq_len": STEPS, "vocab_size": 12})


def _one_step(**overrides):
    ds = _dataset()
    model = build_instrumented(_settings(**overrides), ds, seed=0, capacity=2)
    model.train_step((ds.x_train, ds.y_train))  # eager: tracing a graph per case would dominate
    cols, rows = model.step_records()
    return model, dict(zip(cols, rows[0], strict=True))


def _layer(architecture, return_sequences=True, **overrides):
    """A built recurrent layer from the registry path, on float inputs of FEATURES features."""
    layer = recurrent_layer(
        _settings(architecture=architecture, **overrides), "rnn_0", return_sequences
    )
    layer.build((None, STEPS, FEATURES))
    return layer


def _inputs(seed=0, scale=1.0):
    return np.random.default_rng(seed).normal(0, scale, (BATCH, STEPS, FEATURES)).astype("float32")


# Every variant x activation x normalization pair builds, steps and fits a batch in
# tests/test_models.py (which also checks the built-in vs ZooCell choice and the layer names).


def test_standard_lstm_uses_the_built_in_layer():
    model, _ = _one_step(architecture="lstm")
    assert type(model.get_layer("rnn_1")) is keras.layers.LSTM


def test_custom_cells_compile_with_xla_and_update_batch_statistics():
    ds = _dataset()
    settings = _settings(
        architecture="gru", normalization="batch", activation="maxout", jit_compile=True, depth=1
    )
    model = build_instrumented(settings, ds, seed=0, capacity=1)
    cell = model.get_layer("rnn_0").cell
    model.fit(ds.x_train, ds.y_train, batch_size=16, epochs=1, verbose=0)
    assert model.first_nonfinite_step is None
    assert np.abs(cell.input_moving_mean.numpy()).max() > 0  # the moving averages moved


@pytest.mark.parametrize(
    "architecture, overrides",
    [
        ("lstm_cifg", {"normalization": "batch"}),
        ("gru", {"normalization": "layer", "activation": "maxout"}),
    ],
)
@pytest.mark.parametrize("go_backwards", [False, True])
def test_projected_loop_equals_the_plain_rnn_loop(architecture, overrides, go_backwards):
    # ZooRNN hoists x @ kernel (and its batch norm) out of the loop; a probe wrapping the cell
    # runs the plain keras.layers.RNN loop. Both must give the same outputs.
    cell = _layer(architecture, **overrides).cell
    x = _inputs(10, scale=2.0)
    outputs, stats = [], []
    for layer_cls in (keras.layers.RNN, ZooRNN):
        for variable in cell.non_trainable_variables:  # fresh statistics for each loop
            variable.assign(np.full(variable.shape, 0.0 if "mean" in variable.name else 1.0))
        layer = layer_cls(cell, return_sequences=True, go_backwards=go_backwards)
        outputs.append(np.asarray(layer(x, training=True)))
        stats.append({v.name: v.numpy() for v in cell.non_trainable_variables})
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-6)
    if overrides["normalization"] != "batch":
        return
    np.testing.assert_allclose(stats[1]["recurrent_mean"], stats[0]["recurrent_mean"], rtol=1e-5)
    # Input-term moving averages: exactly T sequential updates, in processing order (numpy).
    projected = x.astype(np.float64) @ cell.kernel.numpy()
    mean, variance = np.zeros(projected.shape[-1]), np.ones(projected.shape[-1])
    order = range(STEPS - 1, -1, -1) if go_backwards else range(STEPS)
    for t in order:
        mean = 0.99 * mean + 0.01 * projected[:, t].mean(0)
        variance = 0.99 * variance + 0.01 * projected[:, t].var(0)
    np.testing.assert_allclose(stats[1]["input_mean"], mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats[1]["input_variance"], variance, rtol=1e-4)


def test_lstm_as_rnn_equals_the_hand_written_recurrence():
    layer = _layer("lstm_as_rnn")
    rng = np.random.default_rng(1)
    kernel, recurrent, bias = (
        rng.normal(0, 0.7, w.shape).astype("float32") for w in layer.get_weights()
    )
    assert kernel.shape == (FEATURES, UNITS)  # no gate has weights: only the candidate block
    layer.set_weights([kernel, recurrent, bias])
    x = _inputs(2)
    out = np.asarray(layer(x))
    h = np.zeros((BATCH, UNITS))
    for t in range(STEPS):
        h = np.tanh(np.tanh(x[:, t].astype(np.float64) @ kernel + h @ recurrent + bias))
        np.testing.assert_allclose(out[:, t], h, atol=1e-6)


@pytest.mark.parametrize("architecture", ["lstm", *NEW_LSTMS])
def test_forced_gates_are_constant_and_the_step_uses_the_reported_gates(architecture):
    cell = _layer(architecture).cell
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (BATCH, FEATURES)).astype("float32")
    h, c = (rng.normal(0, 1, (BATCH, UNITS)).astype("float32") for _ in range(2))
    gates = {k: np.asarray(v) for k, v in gate_values(cell, x, [h, c]).items()}
    forced = VARIANTS[architecture][1]
    modes = {name: forced.get(f"{name}_gate", "learned") for name in ("forget", "input", "output")}
    for name in ("forget", "input", "output"):
        if modes[name] == "learned":
            assert gates[name].std() > 1e-3, name
        else:
            np.testing.assert_array_equal(gates[name], np.full((BATCH, UNITS), modes[name]))
    h_new, (_, c_new) = cell(x, [h, c])
    expected_c = gates["forget"] * c + gates["input"] * gates["candidate"]
    np.testing.assert_allclose(np.asarray(c_new), expected_c, atol=1e-6)
    np.testing.assert_allclose(np.asarray(h_new), gates["output"] * np.tanh(expected_c), atol=1e-6)


def test_cifg_forget_gate_is_one_minus_input_gate():
    cell = _layer("lstm_cifg").cell
    assert cell.kernel.shape == (FEATURES, 3 * UNITS)  # input, output, candidate: no forget weights
    rng = np.random.default_rng(4)
    x, h = (
        rng.normal(0, 1, (BATCH, FEATURES)).astype("float32"),
        rng.normal(0, 1, (BATCH, UNITS)).astype("float32"),
    )
    gates = gate_values(cell, x, [h, h])
    np.testing.assert_allclose(
        np.asarray(gates["forget"]), 1.0 - np.asarray(gates["input"]), atol=1e-7
    )


@pytest.mark.parametrize(
    "architecture, forget_bias", [("lstm", 1.0), ("lstm", 0.0), ("lstm_nig", 1.0)]
)
def test_forget_bias_setting(architecture, forget_bias):
    layer = _layer(architecture, forget_bias=forget_bias)
    bias = layer.cell.bias.numpy()
    start = (
        1 if architecture == "lstm" else 0
    )  # forget block after input (built-in order i, f, c, o)
    np.testing.assert_array_equal(bias[start * UNITS : (start + 1) * UNITS], forget_bias)
    assert np.count_nonzero(bias) == (UNITS if forget_bias else 0)


@pytest.mark.parametrize("architecture", ["rnn", "lstm", "gru", "lstm_cifg"])
def test_irnn_identity_initialization(architecture):
    cell = _layer(architecture, init="identity").cell
    recurrent = cell.recurrent_kernel.numpy()
    for block in np.split(recurrent, recurrent.shape[1] // UNITS, axis=1):
        np.testing.assert_array_equal(block, np.eye(UNITS))
    assert 0 < cell.kernel.numpy().std() < 0.005  # N(0, 0.001) input weights
    if architecture in ("rnn", "gru"):
        assert not np.any(cell.bias.numpy())


@pytest.mark.parametrize("radius", [0.5, 1.5])
@pytest.mark.parametrize(
    "architecture, normalization", [("rnn", "none"), ("lstm", "none"), ("gru", "layer")]
)
def test_spectral_radius_initialization(architecture, normalization, radius):
    layer = _layer(
        architecture, init=f"spectral_radius:{radius}", normalization=normalization, units=16
    )
    recurrent = layer.cell.recurrent_kernel.numpy()
    for block in np.split(recurrent, recurrent.shape[1] // 16, axis=1):
        assert spectral_radius(block) == pytest.approx(radius, rel=1e-3)


def test_recurrent_layer_sum_standardizes_summed_inputs_at_every_timestep():
    # Linear activation, fresh gain 1 and bias 0: the output *is* the normalized summed input.
    layer = _layer("rnn", normalization="layer_sum", activation="linear", units=16)
    out = np.asarray(layer(_inputs(5, scale=3.0))).astype(np.float64)  # (batch, time, units)
    np.testing.assert_allclose(out.mean(axis=-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.var(axis=-1), 1.0, rtol=5e-3)  # var / (var + 1e-3)


def test_recurrent_batch_norm_uses_per_timestep_batch_statistics_and_gamma_init():
    layer = _layer("rnn", normalization="batch", activation="linear", bn_gamma_init=0.1)
    cell, x = layer.cell, _inputs(6, scale=2.0)
    out = np.asarray(layer(x, training=True))
    # At t = 0, h_{-1} = 0, so h_0 = 0.1 * BN(W x_0): batch mean 0 and batch std 0.1 per unit.
    projected = x[:, 0].astype(np.float64) @ cell.kernel.numpy()
    expected = 0.1 * (projected - projected.mean(0)) / np.sqrt(projected.var(0) + 1e-3)
    np.testing.assert_allclose(out[:, 0], expected, atol=1e-5)
    assert np.abs(cell.input_moving_mean.numpy()).max() > 0
    inference = np.asarray(layer(x, training=False))
    assert not np.allclose(inference, out)  # inference reads the moving averages instead


def test_maxout_layer_is_the_max_over_consecutive_pieces():
    x = np.random.default_rng(7).normal(0, 1, (3, 5, 12)).astype("float32")
    out = np.asarray(Maxout(3)(x))
    np.testing.assert_array_equal(out, x.reshape(3, 5, 4, 3).max(axis=-1))


def test_maxout_dense_block_in_an_mlp():
    ds = _dataset()
    model = build_model(
        _settings(architecture="mlp", activation="maxout", maxout_pieces=3, depth=1), ds
    )
    probe = keras.Model(
        model.inputs, [model.get_layer("dense_0").output, model.get_layer("dense_0_act").output]
    )
    linear, activated = (np.asarray(t) for t in probe(ds.x_train[:4]))
    assert linear.shape == (4, UNITS * 3)
    np.testing.assert_array_equal(activated, linear.reshape(4, UNITS, 3).max(axis=-1))


def test_maxout_candidate_in_a_cell():
    layer = _layer("rnn", activation="maxout", maxout_pieces=2)
    x = _inputs(8)
    out = np.asarray(layer(x))
    pre = (
        x[:, 0].astype(np.float64) @ layer.cell.kernel.numpy() + layer.cell.bias.numpy()
    )  # h_{-1} = 0
    np.testing.assert_allclose(out[:, 0], pre.reshape(BATCH, UNITS, 2).max(axis=-1), atol=1e-6)


@pytest.mark.parametrize("architecture", ["lstm", "gru", "rnn"])
def test_gate_values_of_built_in_cells_reproduce_their_step(architecture):
    layer = _layer(architecture)
    cell = layer.cell
    rng = np.random.default_rng(9)
    x = rng.normal(0, 1, (BATCH, FEATURES)).astype("float32")
    states = [
        rng.normal(0, 1, (BATCH, UNITS)).astype("float32") for _ in np.atleast_1d(cell.state_size)
    ]
    h_new, _ = cell(x, states if architecture == "lstm" else states[0])
    gates = {k: np.asarray(v) for k, v in gate_values(cell, x, states).items()}
    h = states[0]
    if architecture == "lstm":
        c = gates["forget"] * states[1] + gates["input"] * gates["candidate"]
        expected = gates["output"] * np.tanh(c)
    elif architecture == "gru":
        expected = gates["update"] * h + (1 - gates["update"]) * gates["candidate"]
    else:
        expected = gates["candidate"]
    np.testing.assert_allclose(np.asarray(h_new), expected, atol=1e-6)


@pytest.mark.parametrize(
    "position, order",
    [("pre", ("dense_0_norm", "dense_0_act")), ("post", ("dense_0_act", "dense_0_norm"))],
)
def test_norm_position_orders_normalization_and_activation(position, order):
    model = build_model(
        _settings(architecture="mlp", normalization="batch", norm_position=position), _dataset()
    )
    first, second = order
    assert model.get_layer(second).input is model.get_layer(first).output


def test_kernel_init_normal_sets_the_scale():
    ds = _dataset()
    model = build_model(
        _settings(architecture="mlp", kernel_init="normal:2.0", units=64, depth=1), ds
    )
    assert model.get_layer("dense_0").kernel.numpy().std() == pytest.approx(2.0, rel=0.1)


@pytest.mark.parametrize(
    "key, level, message",
    [
        ("init", "spectral:1.1", "did you mean 'spectral_radius'"),
        ("init", "spectral_radius:-2", "must be a finite number > 0"),
        ("init", "xavier", "glorot_uniform, orthogonal, identity or spectral_radius:RADIUS"),
        ("kernel_init", "normal:abc", "must be a number"),
        ("kernel_init", "he_uniform", "did you mean 'he_normal'"),
        ("forget_bias", 0.5, "forget_bias must be 0 or 1"),
        ("activation", "maxuot", "did you mean 'maxout'"),
    ],
)
def test_bad_zoo_settings_name_the_key_and_the_choices(key, level, message):
    text = f"name: t\ndataset: {{name: ngram}}\ngrid: {{{key}: [{level!r}]}}\n"
    with pytest.raises(ConfigError, match=key) as info:
        parse_experiment(text, source="exp.yaml")
    assert message in str(info.value) and "exp.yaml:3" in str(info.value)


def test_init_levels_have_one_spelling():
    assert (
        RunSettings(init="spectral_radius:1").init == RunSettings(init=" spectral_radius:1.0").init
    )
    assert RunSettings(kernel_init="normal:1").kernel_init == "normal:1.0"
