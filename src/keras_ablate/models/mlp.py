"""Deep MLP over the flattened (embedded) sequence: the feed-forward baseline for depth effects."""

from __future__ import annotations

import keras

from keras_ablate.models.layers import dense_block, head, sequence_input


def build_mlp(settings: dict, dataset) -> keras.Model:
    """`depth` blocks dense_0 .. dense_{depth-1}, each Dense -> normalization -> activation (norm_position)."""
    inputs, x = sequence_input(settings, dataset)
    x = keras.layers.Flatten(name="flatten")(x)
    for i in range(settings["depth"]):
        x = dense_block(x, settings, f"dense_{i}", settings["units"])
    return keras.Model(inputs, head(x, settings, dataset), name="mlp")
