"""Stacked recurrent models: SimpleRNN, LSTM, GRU (built-in Keras layers), named rnn_0, rnn_1, ..."""

from __future__ import annotations

import keras

from keras_ablate.models.layers import activation_fn, head, norm_factory, sequence_input

_LAYERS = {"rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}


def recurrent_layer(settings: dict, name: str, return_sequences: bool) -> keras.layers.Layer:
    """A fresh recurrent layer; `activation` is the candidate / hidden nonlinearity (gates stay sigmoid)."""
    cls = _LAYERS[settings["architecture"]]
    return cls(
        settings["units"],
        activation=activation_fn(settings["activation"], settings),
        return_sequences=return_sequences,
        name=name,
    )


def build_recurrent(settings: dict, dataset) -> keras.Model:
    """`depth` recurrent layers; normalization (if any) sits between layers as rnn_{i}_norm."""
    inputs, x = sequence_input(settings, dataset)
    norm = norm_factory(settings["normalization"])
    depth = settings["depth"]
    for i in range(depth):
        x = recurrent_layer(settings, f"rnn_{i}", return_sequences=i < depth - 1)(x)
        if norm is not None:
            x = norm(f"rnn_{i}_norm")(x)
    return keras.Model(inputs, head(x, settings, dataset), name=settings["architecture"])
