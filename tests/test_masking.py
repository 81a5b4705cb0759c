"""Padding is masked in every architecture: pre- and post-padding give the same model, and padding
never reaches a gradient, a batch statistic or a probe reading."""

from __future__ import annotations

import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ablate.config import RunSettings
from keras_ablate.data.base import Dataset
from keras_ablate.models import build_model
from keras_ablate.training.probes import Probe

T, VOCAB, N = 10, 20, 12
ARCHITECTURES = ["cnn", "mlp", "rnn", "lstm", "gru", "lstm_cifg", "lstm_as_rnn"]
NORMALIZATIONS = ["none", "batch", "layer", "layer_sum"]


def _texts(seed=0, n=N):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, T + 1, size=n)
    lengths[:2] = (T, 4)
    texts = [rng.integers(1, VOCAB, size=length).astype(np.int32) for length in lengths]
    y = rng.integers(0, 2, size=n).astype(np.int32)
    return texts, y


def _pad(texts, where, length=T):
    out = np.zeros((len(texts), length), np.int32)
    for i, text in enumerate(texts):
        if where == "post":
            out[i, : len(text)] = text
        else:
            out[i, length - len(text) :] = text
    return out


def _dataset(x, y):
    return Dataset("texts", x, y, x, y, "binary", "tokens", VOCAB, 2, ["a", "b"])


def _settings(architecture, normalization, depth=1, **extra):
    return RunSettings(
        architecture=architecture,
        normalization=normalization,
        depth=depth,
        units=6,
        embed_dim=5,
        filters=4,
        kernel_sizes=(2, 3),
        **extra,
    ).model_dump()


def _twin_models(settings, datasets):
    models = []
    for ds in datasets:
        keras.utils.set_random_seed(7)
        models.append(build_model(settings, ds))
    return models


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_pre_and_post_padding_give_the_same_predictions(architecture, normalization):
    texts, y = _texts()
    post, pre = _pad(texts, "post"), _pad(texts, "pre")
    depth = 2 if architecture in ("cnn", "lstm") else 1
    settings = _settings(architecture, normalization, depth=depth)
    a, b = _twin_models(settings, [_dataset(post, y), _dataset(pre, y)])
    np.testing.assert_allclose(a(post), b(pre), rtol=1e-5, atol=1e-6)
    if normalization != "batch" or architecture in ("cnn", "mlp"):
        # Training mode too: batch statistics of cnn/mlp count real positions only. (Recurrent
        # batch norm keeps per-timestep statistics, and timestep t holds other tokens under pre.)
        np.testing.assert_allclose(
            a(post, training=True), b(pre, training=True), rtol=1e-5, atol=1e-6
        )


def test_without_the_mask_post_padding_would_change_the_lstm():
    # The property above is not vacuous: the same weights read the padding when it is not masked.
    texts, y = _texts()
    post, pre = _pad(texts, "post"), _pad(texts, "pre")
    a, _ = _twin_models(_settings("lstm", "none"), [_dataset(post, y), _dataset(pre, y)])
    unmasked = types.SimpleNamespace(**{**vars(_dataset(post, y))}, padded=False)
    unmasked.seq_len, unmasked.input_kind = T, "tokens"
    keras.utils.set_random_seed(7)
    plain = build_model(_settings("lstm", "none"), unmasked)
    assert np.abs(np.asarray(plain(post)) - np.asarray(a(post))).max() > 1e-4


def test_the_mlp_reads_token_k_of_a_text_at_position_k_and_never_the_padding():
    texts, y = _texts(seed=8)
    post = _pad(texts, "post")
    keras.utils.set_random_seed(1)
    model = build_model(_settings("mlp", "none"), _dataset(post, y))
    aligned = keras.Model(model.inputs, model.get_layer("align").output)
    for x in (post, _pad(texts, "pre")):
        out = np.asarray(aligned(x))
        embedded = np.asarray(model.get_layer("embed")(x))
        for i, text in enumerate(texts):
            start = 0 if x is post else T - len(text)
            np.testing.assert_array_equal(
                out[i, : len(text)], embedded[i, start : start + len(text)]
            )
            assert not out[i, len(text) :].any()


def _grads(model, x, y):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.binary_crossentropy(y[:, None], model(x)))
    return [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, model.trainable_variables)]


@pytest.mark.parametrize(
    "architecture, normalization",
    [("lstm", "none"), ("gru", "none"), ("rnn", "layer"), ("cnn", "none")],
)
def test_a_padded_batch_has_the_gradient_of_its_unpadded_examples(architecture, normalization):
    texts, y = _texts(seed=2, n=4)
    texts = [t if len(t) >= 3 else np.concatenate([t, t, t]) for t in texts]  # a CNN window each
    settings = _settings(architecture, normalization)
    padded = _pad(texts, "post")
    keras.utils.set_random_seed(3)
    model = build_model(settings, _dataset(padded, y))
    batch = _grads(model, padded, y.astype("float32"))
    # Each example alone, at its own length: an unpadded model of that length with the same weights.
    per_example = []
    for text, label in zip(texts, y, strict=True):
        exact = types.SimpleNamespace(
            input_kind="tokens", seq_len=len(text), vocab_size=VOCAB, padded=True,
            task="binary", n_classes=2,
        )  # fmt: skip
        alone = build_model(settings, exact)
        alone.set_weights(model.get_weights())
        per_example.append(_grads(alone, text[None], np.array([label], "float32")))
    for got, *singles in zip(batch, *per_example, strict=True):
        np.testing.assert_allclose(got, np.mean(singles, axis=0), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("architecture", ["rnn", "lstm", "gru"])
def test_recurrent_batch_norm_statistics_skip_padded_examples(architecture):
    # All-padding examples add nothing real at any step: the real examples' training-mode outputs
    # and the moving statistics must be what they are without them.
    texts, y = _texts(seed=4, n=6)
    x = _pad(texts, "post")
    extra = np.concatenate([x, np.zeros((3, T), np.int32)])
    settings = _settings(architecture, "batch")
    outputs, statistics = [], []
    for batch in (x, extra):
        keras.utils.set_random_seed(5)
        model = build_model(settings, _dataset(extra, np.zeros(len(extra), np.int32)))
        outputs.append(np.asarray(model(batch, training=True))[: len(x)])
        statistics.append([v.numpy() for v in model.non_trainable_variables])
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-6)
    for with_padding, without in zip(statistics[1], statistics[0], strict=True):
        np.testing.assert_allclose(with_padding, without, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("architecture, normalization", [("lstm", "none"), ("gru", "layer")])
def test_probe_distances_count_from_each_examples_last_real_token(architecture, normalization):
    texts, y = _texts(seed=6, n=8)
    post, pre = _pad(texts, "post"), _pad(texts, "pre")
    settings = _settings(architecture, normalization, depth=2)
    frames = []
    for x in (post, pre):
        keras.utils.set_random_seed(9)
        model = build_model(settings, _dataset(x, y))
        frames.append(Probe(model, x, y, "binary_crossentropy").measure(0)["timesteps"])
    a, b = frames
    np.testing.assert_array_equal(a["distance"], b["distance"])
    np.testing.assert_allclose(a["grad_norm"], b["grad_norm"], rtol=1e-5)
    lengths = np.array([len(t) for t in texts])
    top = a[a["layer"] == "rnn_1"].set_index("distance")
    # Distance d is reached by every example with more than d real tokens.
    expected = [(lengths > d).sum() for d in top.index]
    np.testing.assert_array_equal(top["n_examples"], expected)
    assert (top["grad_norm"] > 0).all()
