"""Text CNN (Kim 2014): parallel Conv1D n-gram windows, pooling over time, dense head."""

from __future__ import annotations

import keras

from keras_ablate.models.initializers import kernel_initializer
from keras_ablate.models.layers import (
    MaskedGlobalPooling,
    WindowMask,
    head,
    norm_and_activation,
    sequence_input,
    width_for,
)


def build_cnn(settings: dict, dataset) -> keras.Model:
    """One branch per window size k (layers conv_k{k}, conv_k{k}_1, ... for depth > 1).

    Each block is Conv1D (linear, `kernel_init`; filters x k for maxout) -> normalization ->
    activation, so the normalization sees pre-activations (Ioffe & Szegedy's placement);
    `norm_position: post` puts it after the activation. The first block uses 'valid' padding (a
    narrow convolution, as in Kim 2014); deeper blocks use 'same' so short sequences survive.
    On padded text, a window is real only when every token it reads is real (WindowMask), and
    pooling and batch-norm statistics use real windows only.
    """
    inputs, x, mask = sequence_input(settings, dataset)
    pool_cls = (
        keras.layers.GlobalMaxPooling1D
        if settings["pooling"] == "max"
        else keras.layers.GlobalAveragePooling1D
    )
    branches = []
    for k in settings["kernel_sizes"]:
        h, h_mask = x, mask
        for d in range(settings["depth"]):
            name = f"conv_k{k}" if d == 0 else f"conv_k{k}_{d}"
            padding = "valid" if d == 0 and k <= dataset.seq_len else "same"
            width = width_for(settings, settings["filters"])
            init = kernel_initializer(settings["kernel_init"])
            h = keras.layers.Conv1D(width, k, padding=padding, kernel_initializer=init, name=name)(
                h
            )
            if h_mask is not None:
                h_mask = WindowMask(k, padding, name=f"{name}_mask")(h_mask)
            h = norm_and_activation(h, settings, name, mask=h_mask)
        if h_mask is None:
            branches.append(pool_cls(name=f"pool_k{k}")(h))
        else:
            branches.append(
                MaskedGlobalPooling(settings["pooling"], name=f"pool_k{k}")([h, h_mask])
            )
    x = branches[0] if len(branches) == 1 else keras.layers.Concatenate(name="concat")(branches)
    return keras.Model(inputs, head(x, settings, dataset), name="cnn")
