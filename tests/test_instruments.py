"""Probe instruments vs closed forms and independent tapes; derived metrics on hand-built frames."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from keras_ablate.analysis import instruments, metrics
from keras_ablate.config import RunSettings, RunSpec, make_run_id
from keras_ablate.data import load_dataset
from keras_ablate.models.cells import gate_values
from keras_ablate.training.loop import build_instrumented, run_one
from keras_ablate.training.probes import Probe, ProbeCallback, kernel_spectra, probe_batch
from keras_ablate.training.step import clip_gradients
from tests.test_instrument_rules import _series

DATA = {"name": "ngram", "options": {"n_train": 64, "n_val": 32, "seq_len": 8, "vocab_size": 20}}


def _settings(**overrides) -> dict:
    base = {
        "units": 6,
        "embed_dim": 5,
        "filters": 4,
        "batch_size": 32,
        "epochs": 1,
        "jit_compile": False,
    }
    return RunSettings(**{**base, **overrides}).model_dump(mode="json")


def _sum_loss_probe(model, x):
    """A probe whose loss is the batch mean of the model's (linear) output, independent of labels."""
    probe = Probe(model, x, np.zeros(len(x), np.float32), "mse")
    probe.loss = lambda y_true, y_pred: tf.reduce_mean(y_pred)
    return probe


def _linear_rnn(units, features, steps, activation="linear"):
    inputs = keras.Input((steps, features))
    h = keras.layers.SimpleRNN(units, activation=activation, name="rnn_0")(inputs)
    out = keras.layers.Dense(1, use_bias=False, name="dense_out")(h)
    return keras.Model(inputs, out)


def test_linear_rnn_timestep_gradients_match_powers_of_w_transpose():
    units, features, steps, batch = 5, 3, 9, 4
    rng = np.random.default_rng(0)
    model = _linear_rnn(units, features, steps)
    w = rng.normal(size=(units, units)) * 0.4
    w *= 0.9 / np.max(np.abs(np.linalg.eigvals(w)))  # spectral radius 0.9: a visible decay
    rnn = model.get_layer("rnn_0")
    kernel, _, bias = rnn.get_weights()
    rnn.set_weights([kernel, w.astype(np.float32), bias])
    v = rng.normal(size=(units, 1))
    model.get_layer("dense_out").set_weights([v.astype(np.float32)])
    x = rng.normal(size=(batch, steps, features)).astype(np.float32)

    frames = _sum_loss_probe(model, x).measure(0)
    measured = frames["timesteps"].sort_values("t")["grad_norm"].to_numpy()

    # h_{t+1} = x U + h_t W, L = mean_b h_T v: dL/dh_t = (v^T / B) (W^T)^(T-1-t) for every example.
    row = v[:, 0] / batch
    expected = np.empty(steps)
    for t in range(steps - 1, -1, -1):
        expected[t] = np.sqrt(batch) * np.linalg.norm(row)
        row = row @ w.T
    np.testing.assert_allclose(measured, expected, rtol=1e-4)
    assert frames["timesteps"]["distance"].tolist() == list(range(steps - 1, -1, -1))


@pytest.mark.parametrize(
    "architecture, normalization", [("lstm", "none"), ("gru", "none"), ("lstm_cifg", "layer")]
)
def test_timestep_gradients_equal_an_explicit_unrolled_tape(architecture, normalization):
    # Independent reference: run the layer's own cell step by step in Python and take the tape
    # gradient with respect to each intermediate h_t (which feeds both the loss and later steps).
    ds = load_dataset(DATA["name"], DATA["options"])
    settings = _settings(architecture=architecture, normalization=normalization)
    model = build_instrumented(settings, ds, seed=0, capacity=2)
    x, y = probe_batch(ds, 16)
    frames = Probe(model, x, y, "binary_crossentropy").measure(0)
    measured = frames["timesteps"]

    cell = model.get_layer("rnn_0").cell
    embedded = model.get_layer("embed")(x)
    n_states = len(cell.state_size) if isinstance(cell.state_size, (list, tuple)) else 1
    states = [tf.zeros((len(x), settings["units"])) for _ in range(n_states)]
    with tf.GradientTape() as tape:
        hs, gates = [], []
        for t in range(x.shape[1]):
            gates.append(
                gate_values(cell, embedded[:, t], states)
            )  # gates of step t: states from t-1
            h, states = cell(embedded[:, t], states, training=True)
            hs.append(h)
        pred = model.get_layer("dense_out")(hs[-1])
        loss = tf.reduce_mean(
            keras.losses.binary_crossentropy(y.reshape(-1, 1).astype(np.float32), pred)
        )
    expected = [float(tf.norm(g)) for g in tape.gradient(loss, hs)]
    np.testing.assert_allclose(measured.sort_values("t")["grad_norm"], expected, rtol=1e-4)

    # Gate means over the probe batch and all timesteps, step by step as the cell saw them.
    units = frames["units"].set_index("quantity")["value"]
    names = [g for g in gates[0] if g != "candidate"]
    assert names and {f"gate_mean/{g}" for g in names} <= set(units.index)
    for name in names:
        step_means = [float(np.mean(step[name])) for step in gates]
        assert units[f"gate_mean/{name}"] == pytest.approx(np.mean(step_means), rel=1e-5), name
    if architecture == "lstm":
        # Keras LSTM from its weights (gate order i, f, c, o): the forget gate at t = 0 sees h = 0.
        kernel, _, bias = (w.numpy() for w in cell.weights)
        n = cell.units
        pre = embedded[:, 0].numpy() @ kernel[:, n : 2 * n] + bias[n : 2 * n]
        np.testing.assert_allclose(
            np.asarray(gates[0]["forget"]), 1 / (1 + np.exp(-pre)), rtol=1e-5
        )


def _scaled_tanh_rnn(radius, steps=12, units=8, input_scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    model = _linear_rnn(units, 2, steps, activation="tanh")
    rnn = model.get_layer("rnn_0")
    q, _ = np.linalg.qr(rng.normal(size=(units, units)))
    kernel, _, bias = rnn.get_weights()
    rnn.set_weights([kernel, (radius * q).astype(np.float32), bias])  # |eigenvalues| all = radius
    x = (input_scale * rng.normal(size=(16, steps, 2))).astype(np.float32)
    return model, x


def test_decay_factor_is_below_one_at_radius_half_and_above_one_at_radius_one_and_a_half():
    factors = {}
    for radius in (0.5, 1.5):
        model, x = _scaled_tanh_rnn(radius, input_scale=1e-3)
        frames = _sum_loss_probe(model, x).measure(0)
        metrics = instruments.timestep_metrics(frames["timesteps"])
        factors[radius] = float(metrics["decay_factor"].iloc[0])
        # Spectral radius of the recurrent kernel is what we set.
        w = frames["weights"].set_index("quantity")["value"]
        assert w["spectral_radius/candidate"] == pytest.approx(radius, rel=1e-5)
    assert factors[0.5] < 1 < factors[1.5]
    # Near the linear regime the per-step factor is close to the radius itself.
    assert factors[0.5] == pytest.approx(0.5, rel=0.05)
    assert factors[1.5] == pytest.approx(1.5, rel=0.05)


def test_norm_clipping_keeps_the_direction_and_value_clipping_turns_it():
    rng = np.random.default_rng(1)
    grads = [
        tf.constant(rng.normal(size=(4, 3)), tf.float32),
        tf.constant(rng.normal(size=5), tf.float32),
    ]
    flat = np.concatenate([g.numpy().ravel() for g in grads])

    def cosine(clipped):
        c = np.concatenate([g.numpy().ravel() for g in clipped])
        return flat @ c / (np.linalg.norm(flat) * np.linalg.norm(c))

    clipped, fired = clip_gradients(grads, "global_norm:0.1")
    assert bool(fired) and abs(cosine(clipped) - 1) < 1e-6
    dominant = [tf.constant([100.0, 0.5, -0.3]), tf.constant([0.2])]
    flat = np.concatenate([g.numpy() for g in dominant])
    clipped, fired = clip_gradients(dominant, "value:1.0")
    assert bool(fired) and cosine(clipped) < 0.99

    # The recorded column agrees: norm clipping cosine 1, value clipping < 1 on a clipped step.
    ds = load_dataset(DATA["name"], DATA["options"])
    for clip, check in (
        ("global_norm:1e-4", lambda c: abs(c - 1) < 1e-6),
        ("value:1e-4", lambda c: c < 1),
    ):
        model = build_instrumented(_settings(architecture="rnn", clip=clip), ds, seed=0, capacity=2)
        model.train_on_batch(ds.x_train[:32], ds.y_train[:32])
        columns, rows = model.step_records()
        row = dict(zip(columns, rows[0], strict=True))
        assert row["grad/clipped"] == 1 and check(row["grad/cosine"]), (clip, row["grad/cosine"])


def _dense_model(activation, kernel_scale, bias, width=6, features=4):
    inputs = keras.Input((features,))
    pre = keras.layers.Dense(
        width,
        name="dense_0",
        kernel_initializer=keras.initializers.Constant(kernel_scale),
        bias_initializer=keras.initializers.Constant(bias),
    )(inputs)
    act = keras.layers.Activation(activation, name="dense_0_act")(pre)
    return keras.Model(inputs, keras.layers.Dense(1, name="dense_out")(act))


def _unit(frames, quantity):
    units = frames["units"]
    return float(
        units[(units["layer"] == "dense_0") & (units["quantity"] == quantity)]["value"].iloc[0]
    )


def test_saturation_of_huge_tanh_preactivations_and_dead_relu_fractions():
    x = np.abs(np.random.default_rng(2).normal(size=(32, 4))).astype(np.float32) + 0.5
    y = np.zeros(32, np.float32)
    saturated = Probe(_dense_model("tanh", 50.0, 0.0), x, y, "mse").measure(0)
    assert _unit(saturated, "saturated") > 0.99
    calm = Probe(_dense_model("tanh", 0.01, 0.0), x, y, "mse").measure(0)
    assert _unit(calm, "saturated") == 0.0
    dead = Probe(_dense_model("relu", 1.0, -1000.0), x, y, "mse").measure(0)
    assert _unit(dead, "dead") == 1.0
    # Half the units get a large negative bias: exactly half are dead.
    half = _dense_model("relu", 1.0, 0.0)
    kernel, bias = half.get_layer("dense_0").get_weights()
    half.get_layer("dense_0").set_weights([kernel, np.array([-1000.0] * 3 + [0.0] * 3, np.float32)])
    assert _unit(Probe(half, x, y, "mse").measure(0), "dead") == 0.5


def test_depth_profile_matches_an_independent_tape_and_probes_restore_batch_statistics():
    ds = load_dataset(DATA["name"], DATA["options"])
    settings = _settings(architecture="mlp", depth=2, normalization="batch")
    model = build_instrumented(settings, ds, seed=0, capacity=2)
    x, y = probe_batch(ds)
    moving = [v.numpy().copy() for v in model.non_trainable_variables]
    depth = Probe(model, x, y, "binary_crossentropy").measure(0)["depth"]
    for before, v in zip(moving, model.non_trainable_variables, strict=True):
        np.testing.assert_array_equal(before, v.numpy())

    with tf.GradientTape() as tape:
        pred = model(x, training=True)
        loss = tf.reduce_mean(
            keras.losses.binary_crossentropy(y.reshape(-1, 1).astype(np.float32), pred)
        )
    grads = dict(
        zip(
            [id(v) for v in model.trainable_variables],
            tape.gradient(loss, model.trainable_variables),
            strict=True,
        )
    )
    expected = {}
    for layer in model.layers:
        if layer.trainable_variables:
            sq = sum(
                float(tf.reduce_sum(tf.square(tf.convert_to_tensor(grads[id(v)]))))
                for v in layer.trainable_variables
            )
            expected[layer.name] = np.sqrt(sq)
    assert depth["layer"].tolist() == list(expected)  # model order, input side first
    np.testing.assert_allclose(depth["grad_norm"], list(expected.values()), rtol=1e-5)
    assert depth["position"].tolist() == list(range(len(expected)))


def test_kernel_spectra_tell_spectral_radius_from_largest_singular_value():
    nilpotent = np.array([[0.0, 2.0], [0.0, 0.0]])  # eigenvalues 0, singular values 2 and 0
    rotation = np.array([[0.0, -3.0], [3.0, 0.0]])  # eigenvalues +-3i
    values = dict(kernel_spectra(np.hstack([nilpotent, rotation]), ["a", "b"]))
    assert values["spectral_radius/a"] == pytest.approx(0.0, abs=1e-12)
    assert values["max_singular/a"] == pytest.approx(2.0)
    assert values["spectral_radius/b"] == pytest.approx(3.0)
    assert values["max_singular/all"] == pytest.approx(
        np.linalg.norm(np.hstack([nilpotent, rotation]), 2)
    )
    # A diverged run's kernel holds NaN: the spectra say NaN instead of raising.
    broken = dict(kernel_spectra(np.array([[np.nan, 0.0], [0.0, 1.0]]), ["candidate"]))
    assert np.isnan(broken["spectral_radius/candidate"]) and np.isnan(broken["max_singular/all"])


def test_probes_do_not_change_training():
    ds = load_dataset(DATA["name"], DATA["options"])
    settings = _settings(architecture="rnn", normalization="batch", epochs=2)
    weights = []
    for with_probe in (False, True):
        model = build_instrumented(settings, ds, seed=0, capacity=8)
        callbacks = (
            [ProbeCallback(Probe(model, *probe_batch(ds), "binary_crossentropy"))]
            if with_probe
            else []
        )
        model.fit(ds.x_train, ds.y_train, batch_size=32, epochs=2, verbose=0, callbacks=callbacks)
        weights.append([v.numpy() for v in model.variables])
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


def _numpy_gru_gate_means(layer, sequence):
    """Mean update and reset gate of a Keras GRU (reset_after) over batch, units and steps; its outputs."""
    kernel, recurrent, bias = (w.astype(np.float64) for w in layer.get_weights())
    n = recurrent.shape[0]
    h = np.zeros((sequence.shape[0], n))
    z_means, r_means, outputs = [], [], []
    for t in range(sequence.shape[1]):
        x_part = sequence[:, t] @ kernel + bias[0]
        h_part = h @ recurrent + bias[1]
        z = 1 / (1 + np.exp(-(x_part[:, :n] + h_part[:, :n])))
        r = 1 / (1 + np.exp(-(x_part[:, n : 2 * n] + h_part[:, n : 2 * n])))
        candidate = np.tanh(x_part[:, 2 * n :] + r * h_part[:, 2 * n :])
        h = z * h + (1 - z) * candidate
        z_means.append(z.mean())
        r_means.append(r.mean())
        outputs.append(h)
    return {"update": np.mean(z_means), "reset": np.mean(r_means)}, np.stack(outputs, axis=1)


def test_run_one_writes_probe_tables_for_every_epoch_with_the_step_layer_names():
    settings = _settings(architecture="gru", depth=2, epochs=2, clip="norm:0.01")
    spec = RunSpec("t", make_run_id(settings, DATA, 0), settings, DATA, 0, {})
    record = run_one(spec)
    tables = record.tables
    assert set(instruments_tables := ("timesteps", "depth", "units", "weights")) <= set(tables)
    for name in instruments_tables:
        assert sorted(tables[name]["epoch"].unique()) == [0, 1, 2], name
    assert set(tables["timesteps"]["layer"]) == {"rnn_0", "rnn_1"}
    step_layers = {
        c.split("/", 2)[2] for c in tables["steps"].columns if c.startswith("grad/norm/")
    }
    assert set(tables["depth"]["layer"]) == step_layers
    gates = tables["units"][tables["units"]["quantity"].str.startswith("gate_mean/")]
    assert set(gates["quantity"]) == {"gate_mean/update", "gate_mean/reset"}
    # Epoch 0 (before training): each layer's gate means equal a numpy GRU (Keras's
    # reset_after form, gate order z, r, h) run over the probe batch from the initial weights.
    ds = load_dataset(DATA["name"], DATA["options"])
    initial = build_instrumented(settings, ds, seed=spec.seed, capacity=2)
    x, _ = probe_batch(ds)
    sequence = initial.get_layer("embed")(x).numpy().astype(np.float64)
    for layer in ("rnn_0", "rnn_1"):
        expected, sequence = _numpy_gru_gate_means(initial.get_layer(layer), sequence)
        measured = gates[(gates["epoch"] == 0) & (gates["layer"] == layer)]
        measured = measured.set_index("quantity")["value"]
        for gate in ("update", "reset"):
            assert measured[f"gate_mean/{gate}"] == pytest.approx(expected[gate], rel=1e-4), layer
    # A tiny norm threshold clips every step.
    np.testing.assert_array_equal(tables["history"]["train/clip_fraction"], [1.0, 1.0])
    assert 0 < record.summary["probe_time_s"] < record.summary["wall_time_s"]


# --- analysis on hand-built frames ---------------------------------------------------------------


def test_fit_decay_recovers_a_geometric_factor_and_ignores_zeros():
    distance = np.arange(6)
    assert instruments.fit_decay(distance, 3.0 * 0.7**distance) == pytest.approx(0.7)
    with_zero = 3.0 * 1.3**distance
    with_zero[2], with_zero[4] = 0.0, np.inf
    assert instruments.fit_decay(distance, with_zero) == pytest.approx(1.3)
    assert np.isnan(instruments.fit_decay([0, 1, 2], [0.0, 0.0, 1.0]))
    assert np.isnan(instruments.fit_decay([0], [1.0]))


def test_timestep_and_depth_metrics_per_series():
    frame = pd.concat([_series([8.0, 4.0, 2.0, 1.0]), _series([1.0, 1.0, 1.0], epoch=1)])
    metrics = instruments.timestep_metrics(frame).set_index("epoch")
    # t = 0 is farthest from the output: norm 8 at distance 3, 1 at distance 0.
    assert metrics.loc[0, "decay_factor"] == pytest.approx(2.0)
    assert metrics.loc[0, "t0_ratio"] == pytest.approx(8.0)
    assert metrics.loc[1, "decay_factor"] == pytest.approx(1.0)
    depth = pd.DataFrame(
        {
            "run_id": "a",
            "epoch": 0,
            "layer": ["embed", "dense_0", "dense_0_norm", "dense_1", "dense_out"],
            "position": range(5),
            "grad_norm": [9.0, 0.1, 5.0, 0.4, 0.5],
        }
    )
    row = instruments.depth_metrics(depth).iloc[0]
    assert (row["first_layer"], row["last_layer"]) == ("dense_0", "dense_out")
    assert row["depth_ratio"] == pytest.approx(0.2)


def test_clip_rates_from_a_long_steps_table():
    steps = pd.DataFrame(
        {
            "run_id": ["a"] * 8,
            "step": [0, 0, 1, 1, 2, 2, 3, 3],
            "quantity": ["grad/clipped", "grad/cosine"] * 4,
            "layer": "",
            "value": [1.0, 0.8, 0.0, 1.0, 1.0, 0.6, 1.0, 1.0],
        }
    )
    clipped = instruments.clip_steps(steps, pd.Series({"a": 2}))
    rates = instruments.clip_rates(clipped).set_index("epoch")
    assert rates.loc[0, "clip_rate"] == 0.5 and rates.loc[1, "clip_rate"] == 1.0
    assert rates.loc[0, "cosine_clipped"] == pytest.approx(0.8)
    assert rates.loc[1, "cosine_clipped"] == pytest.approx(0.8)
    assert rates.loc[1, "cosine_min"] == pytest.approx(0.6)


def test_run_metrics_give_init_and_final_columns_per_run():
    timesteps = pd.concat(
        [_series([4.0, 2.0, 1.0]), _series([1.0, 1.0, 1.0], epoch=3), _series([1.0, 3.0], "b")]
    )
    depth = pd.DataFrame(
        {
            "run_id": "a",
            "epoch": [0, 0, 3, 3],
            "layer": ["rnn_0", "dense_out"] * 2,
            "position": [0, 1] * 2,
            "grad_norm": [1.0, 4.0, 2.0, 2.0],
        }
    )
    units = pd.DataFrame(
        {
            "run_id": "a",
            "epoch": [0, 3, 3],
            "layer": ["rnn_0", "rnn_0", "dense_0"],
            "quantity": "saturated",
            "value": [0.0, 0.2, 0.4],
        }
    )
    steps = pd.DataFrame(
        {
            "run_id": "a",
            "step": [0, 0],
            "quantity": ["grad/clipped", "grad/cosine"],
            "layer": "",
            "value": [1.0, 0.5],
        }
    )

    class Fake:  # the attributes of analysis.tables.Tables that run_metrics reads
        pass

    tables = Fake()
    tables.timesteps, tables.steps = timesteps, steps
    tables.extra = {"depth": depth, "units": units}
    tables.runs = pd.DataFrame({"run_id": ["a", "b"], "steps_per_epoch": [1, 1]})
    out = instruments.run_metrics(tables).set_index("run_id")
    assert out.loc["a", "decay_factor/rnn_0/init"] == pytest.approx(2.0)
    assert out.loc["a", "decay_factor/rnn_0/final"] == pytest.approx(1.0)
    assert out.loc["b", "decay_factor/rnn_0/init"] == pytest.approx(1 / 3)
    assert out.loc["a", "depth_ratio/init"] == pytest.approx(0.25)
    assert out.loc["a", "depth_ratio/final"] == pytest.approx(1.0)
    assert out.loc["a", "saturated/final"] == pytest.approx(0.3)
    assert out.loc["a", "cosine_clipped"] == 0.5
    # The clip rate over the run has one name and one formula: grad/clip_rate (analysis.metrics).
    assert "clip_rate" not in out.columns
    assert metrics.gradient_stability(steps).loc["a", "grad/clip_rate"] == 1.0


def test_probe_batch_is_the_first_validation_examples():
    ds = load_dataset(DATA["name"], DATA["options"])
    x, y = probe_batch(ds, 10)
    np.testing.assert_array_equal(x, ds.x_val[:10])
    np.testing.assert_array_equal(y, ds.y_val[:10])


# --- report figures on hand-built tables ---------------------------------------------------------


def _fake_tables():
    from types import SimpleNamespace

    rows, timesteps, depth, units, steps = [], [], [], [], []
    for i, (architecture, activation, clip) in enumerate(
        [("rnn", "tanh", "none"), ("lstm", "relu", "norm:0.5"), ("lstm", "tanh", "value:0.01")]
    ):
        run_id = f"r{i}"
        rows.append({"run_id": run_id, "architecture": architecture, "activation": activation,
                     "normalization": "none", "clip": clip, "seed": 0, "steps_per_epoch": 2})  # fmt: skip
        for epoch in (0, 1, 2):
            timesteps.append(_series(0.5 ** np.arange(5)[::-1] * (epoch + 1), run_id, epoch))
            depth.append(pd.DataFrame({"run_id": run_id, "epoch": epoch, "layer": ["embed", "rnn_0", "dense_out"],
                                       "position": [0, 1, 2], "grad_norm": [0.1, 0.2, 0.4]}))  # fmt: skip
            units.append(pd.DataFrame({"run_id": run_id, "epoch": epoch, "layer": "rnn_0",
                                       "quantity": ["saturated", "gate_mean/forget"], "value": [0.1, 0.7]}))  # fmt: skip
        for step in range(6):
            steps.append(pd.DataFrame({"run_id": run_id, "step": step, "quantity": ["grad/clipped", "grad/cosine"],
                                       "layer": "", "value": [step % 2, 0.9 if step % 2 else 1.0]}))  # fmt: skip
    return SimpleNamespace(
        runs=pd.DataFrame(rows),
        steps=pd.concat(steps, ignore_index=True),
        axes=["architecture", "activation", "clip"],
        timesteps=pd.concat(timesteps, ignore_index=True),
        extra={"depth": pd.concat(depth), "units": pd.concat(units)},
    )


def test_instrument_figures_draw_from_tables_and_skip_when_empty():
    import matplotlib.pyplot as plt

    from keras_ablate.report import instrument_plots

    tables = _fake_tables()
    for slug, _, function, caption in instrument_plots.FIGURES:
        figure = function(tables)
        assert figure is not None and figure.axes, slug
        assert caption
        plt.close(figure)
    empty = _fake_tables()
    empty.timesteps, empty.extra = None, {}
    empty.steps = empty.steps.iloc[:0]
    for slug, _, function, _ in instrument_plots.FIGURES:
        assert function(empty) is None, slug
