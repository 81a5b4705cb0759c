"""Instruments on a user's Keras model: per-timestep gradients of every standard recurrent layer
(Bidirectional ones by direction), the layers that cannot be probed said, per-layer norms, and
user builders that fail before `run` writes anything."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ablate.cli import main
from keras_ablate.data.base import Dataset
from keras_ablate.models.user import build_user_model
from keras_ablate.training.probes import Probe
from keras_ablate.training.step import InstrumentedModel
from keras_ablate.usercode import UserCodeError

T = 6


def _data(padded: bool = False, n: int = 8):
    rng = np.random.default_rng(0)
    x = rng.integers(1, 10, size=(n, T)).astype("int32")
    if padded:
        x[:3, :2] = 0  # pre-padding on three examples
    y = rng.integers(0, 2, size=(n,)).astype("int32")
    return x, y


def _bilstm(merge_mode: str = "sum", mask_zero: bool = False) -> keras.Model:
    keras.utils.set_random_seed(1)
    inputs = keras.Input((T,), dtype="int32")
    x = keras.layers.Embedding(10, 4, mask_zero=mask_zero, name="emb")(inputs)
    x = keras.layers.Bidirectional(keras.layers.LSTM(3), merge_mode=merge_mode, name="bi")(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="out")(x))


def _tape_norm(model: keras.Model, x, y, direction: str, t: int) -> float:
    """||dL/dh_t|| of one direction of `bi`, by splitting its run at t (no probe cell): run the
    direction up to and including input position t, watch the state there, and continue from
    it with Keras's own RNN (initial_state) over the remaining positions."""
    emb = model.get_layer("emb")(x)
    bi = model.get_layer("bi")
    rnn = getattr(bi, f"{direction}_layer")
    backwards = direction == "backward"
    done, rest = (emb[:, t:], emb[:, :t]) if backwards else (emb[:, : t + 1], emb[:, t + 1 :])
    _, h, c = keras.layers.RNN(rnn.cell, go_backwards=backwards, return_state=True)(done)
    with tf.GradientTape() as tape:
        tape.watch(h)
        last = h
        if rest.shape[1]:
            last = keras.layers.RNN(rnn.cell, go_backwards=backwards)(rest, initial_state=[h, c])
        other = getattr(bi, f"{'forward' if backwards else 'backward'}_layer")(emb)
        pred = model.get_layer("out")(last + other)
        loss = tf.reduce_mean(keras.losses.binary_crossentropy(y[:, None].astype("float32"), pred))
    gradient = tape.gradient(loss, h).numpy().astype(np.float64)
    return float(np.sqrt(np.sum(gradient**2)))


def test_each_direction_of_a_bidirectional_lstm_matches_a_split_gradient_tape():
    x, y = _data()
    model = _bilstm()
    rows = Probe(model, x, y, "binary_crossentropy").measure(0)["timesteps"]
    assert set(rows["layer"]) == {"bi/forward", "bi/backward"}
    for direction in ("forward", "backward"):
        mine = rows[rows["layer"] == f"bi/{direction}"].set_index("t")
        # Backward: distance counts back from position 0, the step it processes last.
        distance = mine.index if direction == "backward" else T - 1 - mine.index
        np.testing.assert_array_equal(mine["distance"], distance)
        for t in (0, 2, T - 1):
            expected = _tape_norm(model, x, y, direction, t)
            assert mine.loc[t, "grad_norm"] == pytest.approx(expected, rel=1e-5), (direction, t)


def _zoo() -> keras.Model:
    keras.utils.set_random_seed(2)
    inputs = keras.Input((T,), dtype="int32")
    x = keras.layers.Embedding(10, 4, mask_zero=True, name="emb")(inputs)
    x = keras.layers.SimpleRNN(3, return_sequences=True, name="simple")(x)
    x = keras.layers.GRU(3, return_sequences=True, name="gru")(x)
    x = keras.layers.RNN(keras.layers.LSTMCell(3), return_sequences=True, name="cell_rnn")(x)
    x = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True), name="bi")(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="out")(x))


def test_every_standard_recurrent_layer_is_probed_through_keras_masks():
    x, y = _data(padded=True)
    model = _zoo()
    probe = Probe(model, x, y, "binary_crossentropy")
    assert probe.skipped == []
    # The replay (probe cells, masks from the embedding) computes what the model computes.
    zeros = {n: tf.zeros([len(x), T, 3]) for n in probe.recurrent}
    replayed, _ = probe._replay(tf.constant(x), zeros)
    np.testing.assert_allclose(replayed.numpy(), model(x, training=True).numpy(), rtol=1e-6)
    frames = probe.measure(0)
    rows = frames["timesteps"]
    names = {"simple", "gru", "cell_rnn", "bi/forward", "bi/backward"}
    assert set(rows["layer"]) == names
    # Padded examples stop at their first real token: fewer of them reach distance T-1.
    assert rows.groupby("layer")["n_examples"].min().to_dict() == dict.fromkeys(names, 5)
    assert (rows["grad_norm"] > 0).all()
    assert {"gate_mean/forget", "gate_mean/update"} <= set(frames["units"]["quantity"])


def test_layers_the_probe_cannot_replay_are_named_with_the_reason():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((T,), dtype="int32")
    x = keras.layers.Embedding(10, 4, name="emb")(inputs)
    encoder = keras.Sequential([keras.layers.LSTM(3, name="inner_lstm")], name="encoder")
    stateful = keras.layers.GRU(3, return_state=True, name="with_state")(x)[0]
    x = keras.layers.Concatenate()([encoder(x), stateful])
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="out")(x))
    x_probe, y = _data()
    probe = Probe(model, x_probe, y, "binary_crossentropy")
    reasons = {row["layer"]: row["reason"] for row in probe.skipped}
    assert reasons["encoder/inner_lstm"].startswith("inside nested model 'encoder'")
    assert reasons["with_state"].startswith("return_state=True")
    frames = probe.measure(0)
    assert frames["timesteps"].empty and len(frames["depth"]) == 4

    # A layer called twice: the model is called whole, and every recurrent layer is named.
    shared = keras.layers.Dense(4, name="shared")
    h = keras.layers.LSTM(3, name="lstm")(shared(shared(keras.layers.Embedding(10, 4)(inputs))))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(h))
    probe = Probe(model, x_probe, y, "binary_crossentropy")
    assert probe.skipped == [
        {
            "layer": "lstm",
            "reason": "layer 'shared' is called 2 times (shared layers are not replayed)",
        }
    ]
    assert probe.measure(0)["timesteps"].empty


def test_per_layer_gradient_norms_and_clipping_work_on_a_user_model():
    x, y = _data()
    functional = _bilstm(merge_mode="concat")
    model = InstrumentedModel(inputs=functional.inputs, outputs=functional.outputs)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, global_clipnorm=0.01), loss="binary_crossentropy"
    )
    model.configure_instruments("global_norm:0.01", capacity=1)
    weights = [v.numpy() for v in model.trainable_variables]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(
            keras.losses.binary_crossentropy(y[:, None].astype("float32"), model(x))
        )
    # Dense gradients (the embedding's comes as IndexedSlices), in float64.
    raw = tape.gradient(loss, model.trainable_variables)
    grads = {
        v.path: tf.convert_to_tensor(g).numpy().astype(np.float64)
        for v, g in zip(model.trainable_variables, raw, strict=True)
    }
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    columns, rows = model.step_records()
    row = dict(zip(columns, rows[0], strict=True))
    for layer in ("emb", "bi", "out"):
        squares = sum(
            float(np.sum(np.square(g))) for p, g in grads.items() if p.startswith(f"{layer}/")
        )
        assert row[f"grad/norm/{layer}"] == pytest.approx(np.sqrt(squares), rel=1e-5)
    total = np.sqrt(sum(float(np.sum(np.square(g))) for g in grads.values()))
    assert row["grad/global_norm"] == pytest.approx(total, rel=1e-5)
    assert row["grad/clipped"] == 1.0 and row["grad/global_norm_clipped"] == pytest.approx(
        0.01, rel=1e-4
    )
    moved = np.sqrt(
        sum(
            np.sum((v.numpy() - w) ** 2)
            for v, w in zip(model.trainable_variables, weights, strict=True)
        )
    )
    assert moved == pytest.approx(0.1 * 0.01, rel=1e-3)  # SGD step of the clipped gradient


DATASET = Dataset(
    "d", *_data()[:2], *_data()[:2], task="binary", input_kind="tokens", vocab_size=10, n_classes=2
)


def _settings(tmp_path, source: str) -> dict:
    from keras_ablate.usercode import sha256_file

    (tmp_path / "mine.py").write_text(source, encoding="utf-8")
    return {
        "builder": "mine:build",
        "builder_sha256": sha256_file(tmp_path / "mine.py")[:16],
        "params": {},
    }


def test_a_builder_must_return_a_keras_model_and_match_the_planned_source(tmp_path):
    settings = _settings(tmp_path, "def build(settings, dataset):\n    return 'a model'\n")
    with pytest.raises(
        UserCodeError,
        match="returned a builtins.str; a builder must return an uncompiled keras.Model",
    ):
        build_user_model(settings, DATASET, tmp_path)
    source = (
        "import keras\n\nclass Mine(keras.Model):\n    def __init__(self):\n        super().__init__(name='mine')\n"
        "        self.emb = keras.layers.Embedding(10, 4)\n        self.rnn = keras.layers.GRU(3)\n"
        "        self.out = keras.layers.Dense(1, activation='sigmoid')\n\n    def call(self, x):\n"
        "        return self.out(self.rnn(self.emb(x)))\n\ndef build(settings, dataset):\n    return Mine()\n"
    )
    settings = _settings(tmp_path, source)
    model = build_user_model(settings, DATASET, tmp_path)
    assert model.inputs and model.output.shape == (None, 1)  # wrapped: a graph of one layer
    probe = Probe(model, *_data(), "binary_crossentropy")
    assert probe.skipped == [
        {
            "layer": "mine/gru",
            "reason": "inside nested model 'mine': only the top-level layers are replayed",
        }
    ]
    (tmp_path / "mine.py").write_text(source + "\n# edited\n", encoding="utf-8")
    with pytest.raises(UserCodeError, match="changed since the runs were planned"):
        build_user_model(settings, DATASET, tmp_path)


EXPERIMENT = """\
name: mine
dataset: {name: ngram, options: {n_train: 32, n_val: 16, seq_len: 6}}
models: {bilstm: "my_models:build"}
base: {epochs: 1}
grid: {architecture: [lstm, bilstm]}
"""


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "import keras\nraise RuntimeError('no GPU here')\ndef build(settings, dataset):\n    pass\n",
            r"importing module 'my_models' of 'my_models:build' failed: RuntimeError: no GPU here \(line 2\)",
        ),
        (
            "def build(settings, dataset):\n    return [1, 2]\n",
            r"returned a builtins.list; a builder must return",
        ),
        (
            "def build(settings, dataset):\n    return settings['params']['heads']\n",
            r"calling 'my_models:build' raised KeyError: 'heads' \(line 2\)",
        ),
    ],
    ids=["import-error", "not-a-model", "raises"],
)
def test_run_stops_before_writing_when_the_builder_fails(tmp_path, capsys, source, message):
    import re

    (tmp_path / "exp.yaml").write_text(EXPERIMENT, encoding="utf-8")
    (tmp_path / "my_models.py").write_text(source, encoding="utf-8")
    assert main(["plan", str(tmp_path / "exp.yaml")]) == 0  # read with ast: nothing wrong yet
    capsys.readouterr()
    assert (
        main(["run", str(tmp_path / "exp.yaml"), "--results-dir", str(tmp_path / "results")]) == 2
    )
    err = capsys.readouterr().err
    assert "exp.yaml:3: models.bilstm: " in err and re.search(message, err), err
    assert not (tmp_path / "results").exists()


def test_a_builder_that_leaves_layers_unnamed_names_them_alike_in_every_build(tmp_path):
    source = (
        "import keras\n\ndef build(settings, dataset):\n"
        "    inputs = keras.Input((6,), dtype='int32')\n"
        "    x = keras.layers.LSTM(3)(keras.layers.Embedding(10, 4)(inputs))\n"
        "    return keras.Model(inputs, keras.layers.Dense(1, activation='sigmoid')(x))\n"
    )
    settings = _settings(tmp_path, source)
    first = [layer.name for layer in build_user_model(settings, DATASET, tmp_path).layers]
    keras.layers.Dense(2)  # another model's layers in between take names from the same counter
    again = [layer.name for layer in build_user_model(settings, DATASET, tmp_path).layers]
    assert first == again == ["input_layer", "embedding", "lstm", "dense"]
