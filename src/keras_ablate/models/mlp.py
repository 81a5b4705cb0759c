"""Deep MLP over the flattened (embedded) sequence: the feed-forward baseline for depth effects."""

from __future__ import annotations

import keras

from keras_ablate.models.layers import AlignToStart, dense_block, head, sequence_input


def build_mlp(settings: dict, dataset) -> keras.Model:
    """`depth` blocks dense_0 .. dense_{depth-1}, each Dense -> normalization -> activation (norm_position).

    The blocks read the flattened sequence: every position has its own weights, no sharing
    and no pooling (the baseline the CNN is compared with). On padded text the real tokens are
    first moved to the start and the padding zeroed (AlignToStart), so token k of a text meets
    the same weights under pre- and post-padding and padding adds nothing.
    """
    inputs, x, mask = sequence_input(settings, dataset)
    if mask is not None:
        x = AlignToStart(name="align")([x, mask])
    x = keras.layers.Flatten(name="flatten")(x)
    for i in range(settings["depth"]):
        x = dense_block(x, settings, f"dense_{i}", settings["units"])
    return keras.Model(inputs, head(x, settings, dataset), name="mlp")
