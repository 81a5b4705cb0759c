"""Shared building blocks: inputs, activations, normalizations (as factories) and task heads."""

from __future__ import annotations

import keras

from keras_ablate.errors import ConfigError, unknown_name
from keras_ablate.models.names import ACTIVATIONS


def activation_fn(name: str, settings: dict):
    """A callable (or Keras name) for `activation=` arguments, e.g. a recurrent candidate."""
    if name not in ACTIVATIONS:
        raise ConfigError(unknown_name("activation", name, ACTIVATIONS))
    if name == "leaky_relu":
        slope = float(settings.get("leaky_relu_slope", 0.2))
        return lambda x: keras.ops.leaky_relu(x, negative_slope=slope)
    return name


def activation_layer(name: str, settings: dict, layer_name: str) -> keras.layers.Layer:
    """A fresh activation layer; its output is what saturation / dead-unit probes read."""
    if name == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=float(settings.get("leaky_relu_slope", 0.2)), name=layer_name)
    return keras.layers.Activation(activation_fn(name, settings), name=layer_name)


def norm_factory(kind: str):
    """Return a factory name -> fresh normalization layer, or None for 'none'.

    A factory rather than a layer: one layer object used in two places would share weights.
    """
    if kind == "none":
        return None
    if kind == "batch":
        return lambda name: keras.layers.BatchNormalization(name=name)
    if kind == "layer":
        return lambda name: keras.layers.LayerNormalization(name=name)
    raise ConfigError(unknown_name("normalization", kind, ("none", "batch", "layer")))


def sequence_input(settings: dict, dataset):
    """Model input and the (batch, time, features) tensor the body reads: embedded tokens or raw features."""
    if dataset.input_kind == "tokens":
        inputs = keras.Input(shape=(dataset.seq_len,), dtype="int32", name="tokens")
        x = keras.layers.Embedding(dataset.vocab_size, settings["embed_dim"], name="embed")(inputs)
    else:
        inputs = keras.Input(shape=(dataset.seq_len, dataset.n_features), dtype="float32", name="features")
        x = inputs
    return inputs, x


def dense_block(x, settings: dict, name: str, units: int):
    """Dense (linear) -> normalization -> activation, each a named layer."""
    norm = norm_factory(settings["normalization"])
    x = keras.layers.Dense(units, name=name)(x)
    if norm is not None:
        x = norm(f"{name}_norm")(x)
    return activation_layer(settings["activation"], settings, f"{name}_act")(x)


def head(x, settings: dict, dataset):
    """Dropout and the task's output layer `dense_out`."""
    if settings.get("dropout", 0.0) > 0:
        x = keras.layers.Dropout(settings["dropout"], name="dropout")(x)
    if dataset.task == "binary":
        return keras.layers.Dense(1, activation="sigmoid", name="dense_out")(x)
    if dataset.task == "multiclass":
        return keras.layers.Dense(dataset.n_classes, activation="softmax", name="dense_out")(x)
    return keras.layers.Dense(1, name="dense_out")(x)


def loss_for(dataset) -> str:
    return {
        "binary": "binary_crossentropy",
        "multiclass": "sparse_categorical_crossentropy",
        "regression": "mse",
    }[dataset.task]
