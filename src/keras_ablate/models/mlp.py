"""Deep MLP over the flattened (embedded) sequence: the feed-forward baseline for depth effects."""

from __future__ import annotations

import keras

from keras_ablate.models.layers import MaskedGlobalPooling, dense_block, head, sequence_input


def build_mlp(settings: dict, dataset) -> keras.Model:
    """`depth` blocks dense_0 .. dense_{depth-1}, each Dense -> normalization -> activation (norm_position).

    The blocks read the flattened sequence; on padded text, where positions differ between
    pre- and post-padding, they read the embeddings pooled over real tokens (`pooling`) instead.
    """
    inputs, x, mask = sequence_input(settings, dataset)
    if mask is None:
        x = keras.layers.Flatten(name="flatten")(x)
    else:
        x = MaskedGlobalPooling(settings["pooling"], name="pool")([x, mask])
    for i in range(settings["depth"]):
        x = dense_block(x, settings, f"dense_{i}", settings["units"])
    return keras.Model(inputs, head(x, settings, dataset), name="mlp")
