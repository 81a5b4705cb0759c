"""Stacked recurrent models named rnn_0, rnn_1, ...: built-in Keras layers, or ZooCell where they fall short."""

from __future__ import annotations

import keras

from keras_ablate.models.cells import VARIANTS, ZooCell, ZooRNN
from keras_ablate.models.initializers import recurrent_initializers
from keras_ablate.models.layers import activation_fn, head, sequence_input

_BUILT_IN = {"rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}


def uses_built_in(settings: dict) -> bool:
    """The standard configurations run on Keras's own layers; everything else on ZooCell."""
    return (
        settings["architecture"] in _BUILT_IN
        and settings["normalization"] == "none"
        and settings["activation"] != "maxout"
    )


def recurrent_layer(settings: dict, name: str, return_sequences: bool) -> keras.layers.Layer:
    """A fresh recurrent layer; `activation` is the candidate / hidden nonlinearity (gates stay sigmoid).

    Normalization (layer or batch) happens inside the cell at every timestep (models/cells.py),
    not between layers.
    """
    kind, gates = VARIANTS[settings["architecture"]]
    initializers = recurrent_initializers(settings["init"])
    if uses_built_in(settings):
        extra = {"unit_forget_bias": settings["forget_bias"] == 1.0} if kind == "lstm" else {}
        return _BUILT_IN[kind](
            settings["units"],
            activation=activation_fn(settings["activation"], settings),
            return_sequences=return_sequences,
            name=name,
            **initializers,
            **extra,
        )
    activation = (
        "maxout"
        if settings["activation"] == "maxout"
        else activation_fn(settings["activation"], settings)
    )
    cell = ZooCell(
        settings["units"],
        kind=kind,
        activation=activation,
        normalization=settings["normalization"],
        maxout_pieces=settings["maxout_pieces"],
        forget_bias=settings["forget_bias"],
        bn_gamma_init=settings["bn_gamma_init"],
        name=f"{name}_cell",
        **gates,
        **initializers,
    )
    return ZooRNN(cell, return_sequences=return_sequences, name=name)


def build_recurrent(settings: dict, dataset) -> keras.Model:
    """`depth` recurrent layers rnn_0 .. rnn_{depth-1}; the last returns its final state."""
    inputs, x, mask = sequence_input(settings, dataset)
    depth = settings["depth"]
    for i in range(depth):
        # Over padded steps (mask False) each layer carries its state unchanged, as Keras does.
        x = recurrent_layer(settings, f"rnn_{i}", return_sequences=i < depth - 1)(x, mask=mask)
    return keras.Model(inputs, head(x, settings, dataset), name=settings["architecture"])
