"""Shared building blocks: inputs, activations, normalizations (as factories) and task heads."""

from __future__ import annotations

import keras
from keras import ops

from keras_ablate.config.levels import ACTIVATIONS, NORMALIZATIONS
from keras_ablate.errors import ConfigError, unknown_name
from keras_ablate.models.initializers import kernel_initializer


def activation_fn(name: str, settings: dict):
    """A callable (or Keras name) for `activation=` arguments, e.g. a recurrent candidate."""
    if name not in ACTIVATIONS:
        raise ConfigError(unknown_name("activation", name, ACTIVATIONS))
    if name == "leaky_relu":
        slope = float(settings.get("leaky_relu_slope", 0.2))
        return lambda x: keras.ops.leaky_relu(x, negative_slope=slope)
    if name == "maxout":
        # Maxout changes the width, so it cannot be an elementwise `activation=`.
        raise ConfigError(
            "activation 'maxout' needs its own layer (Maxout) or cell (ZooCell), not activation="
        )
    return name


def activation_layer(name: str, settings: dict, layer_name: str) -> keras.layers.Layer:
    """A fresh activation layer; its output is what saturation / dead-unit probes read."""
    if name == "leaky_relu":
        return keras.layers.LeakyReLU(
            negative_slope=float(settings.get("leaky_relu_slope", 0.2)), name=layer_name
        )
    if name == "maxout":
        return Maxout(int(settings["maxout_pieces"]), name=layer_name)
    return keras.layers.Activation(activation_fn(name, settings), name=layer_name)


class Maxout(keras.layers.Layer):
    """Maxout (Goodfellow et al. 2013): unit j = max over channels j*k .. j*k+k-1 of the last axis.

    Consecutive channels form one unit, as in TF Addons' Maxout; a layer feeding it has k times
    the wanted width (see `width_for`).
    """

    def __init__(self, pieces: int, **kwargs):
        super().__init__(**kwargs)
        self.pieces = int(pieces)

    def call(self, inputs):
        channels = inputs.shape[-1]
        if channels % self.pieces:
            raise ValueError(
                f"maxout with {self.pieces} pieces needs a width divisible by it, got {channels}"
            )
        shape = (-1, *inputs.shape[1:-1], channels // self.pieces, self.pieces)
        return keras.ops.max(keras.ops.reshape(inputs, shape), axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // self.pieces)

    def get_config(self):
        return {**super().get_config(), "pieces": self.pieces}


def width_for(settings: dict, units: int) -> int:
    """Width of the linear layer in front of the activation: units x k for maxout, else units."""
    return units * int(settings["maxout_pieces"]) if settings["activation"] == "maxout" else units


def norm_and_activation(x, settings: dict, name: str, mask=None):
    """Normalization and activation after a linear layer `name`, in the order `norm_position` says.

    pre (default): linear -> norm -> activation, so the norm sees pre-activations (Ioffe &
    Szegedy's placement); post: linear -> activation -> norm. Layers: {name}_norm, {name}_act.
    With a (batch, time) `mask`, batch normalization takes its statistics over real positions only.
    """
    norm = norm_factory(settings["normalization"])
    post = settings["norm_position"] == "post"

    def normalize(x):
        if mask is not None and settings["normalization"] == "batch":
            return MaskedBatchNormalization(name=f"{name}_norm")(x, mask=mask)
        return norm(f"{name}_norm")(x)

    if norm is not None and not post:
        x = normalize(x)
    x = activation_layer(settings["activation"], settings, f"{name}_act")(x)
    if norm is not None and post:
        x = normalize(x)
    return x


def norm_factory(kind: str):
    """Return a factory name -> fresh normalization layer, or None for 'none'.

    A factory rather than a layer: one layer object used in two places would share weights.
    """
    if kind == "none":
        return None
    if kind == "batch":
        return lambda name: keras.layers.BatchNormalization(name=name)
    if kind in ("layer", "layer_sum"):
        # A feed-forward layer has one summed input (Wx), so normalizing "the terms separately"
        # and "their sum" are the same thing here; the levels differ only inside recurrent cells.
        return lambda name: keras.layers.LayerNormalization(name=name)
    raise ConfigError(unknown_name("normalization", kind, NORMALIZATIONS))


def sequence_input(settings: dict, dataset):
    """Model input, the (batch, time, features) tensor the body reads, and the padding mask.

    Returns:
        (inputs, x, mask): `mask` is a (batch, time) bool tensor, True on real tokens, from the
        layer `padding_mask` when the dataset holds padding (token id 0), else None. Every
        architecture consumes it explicitly (recurrent layers carry their state over padding,
        CNN and MLP pool over real positions only), so pre- and post-padding give the same
        predictions. Datasets without padding (the synthetic tasks) build the same model as
        before, with no mask.
    """
    if dataset.input_kind == "tokens":
        inputs = keras.Input(shape=(dataset.seq_len,), dtype="int32", name="tokens")
        x = keras.layers.Embedding(dataset.vocab_size, settings["embed_dim"], name="embed")(inputs)
        mask = PaddingMask(name="padding_mask")(inputs) if dataset.padded else None
    else:
        inputs = keras.Input(
            shape=(dataset.seq_len, dataset.n_features), dtype="float32", name="features"
        )
        x, mask = inputs, None
    return inputs, x, mask


class PaddingMask(keras.layers.Layer):
    """Token ids (batch, time) -> bool mask (batch, time): True on real tokens, False on padding (id 0)."""

    def call(self, tokens):
        return ops.not_equal(tokens, 0)

    def compute_output_spec(self, tokens):
        return keras.KerasTensor(tokens.shape, dtype="bool")


class MaskedBatchNormalization(keras.layers.BatchNormalization):
    """BatchNormalization given an explicit mask (statistics over real positions) that, unlike
    Keras's, attaches no mask to its output: the next layers get the mask explicitly too."""

    def compute_mask(self, inputs, previous_mask):
        return None


class WindowMask(keras.layers.Layer):
    """The mask of a Conv1D's outputs: an output position is real when every input it reads is real.

    Inputs past either end of the sequence ('same' padding) count as padding. Under this rule a
    text yields the same set of real windows wherever its padding sits (pre or post).
    """

    def __init__(self, kernel_size: int, padding: str, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size, self.padding = int(kernel_size), padding

    def call(self, mask):
        counts = ops.conv(
            ops.cast(mask, "float32")[..., None],
            ops.ones((self.kernel_size, 1, 1)),
            padding=self.padding,
        )
        return counts[..., 0] > self.kernel_size - 0.5

    def compute_output_spec(self, mask):
        steps = mask.shape[1]
        if self.padding == "valid" and steps is not None:
            steps = steps - self.kernel_size + 1
        return keras.KerasTensor((mask.shape[0], steps), dtype="bool")

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "padding": self.padding}


class AlignToStart(keras.layers.Layer):
    """[x (batch, time, features), mask (batch, time)] -> x with each example's real positions moved,
    in order, to the start and zeros after them.

    A layer that reads positions (the MLP's Dense over the flattened sequence) then sees a text
    the same way whether it was padded before or after: token k of the text is at position k.
    """

    def call(self, inputs):
        x, mask = inputs
        steps = ops.shape(x)[1]
        real = ops.cast(mask, "int32")
        # Real positions first, each group in its original order: sort by (padding, position).
        order = ops.argsort((1 - real) * steps + ops.arange(steps, dtype="int32")[None, :], axis=1)
        aligned = ops.take_along_axis(x, order[..., None], axis=1)
        kept = ops.take_along_axis(real, order, axis=1)
        return aligned * ops.cast(kept, x.dtype)[..., None]

    def compute_output_shape(self, input_shape):
        return input_shape[0]


class MaskedGlobalPooling(keras.layers.Layer):
    """Max or average over the real positions of [x (batch, time, channels), mask (batch, time)].

    An example with no real position (a text shorter than a CNN window) pools to zeros.
    """

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("max", "average"):
            raise ValueError(f"pooling must be 'max' or 'average', got {mode!r}")
        self.mode = mode

    def call(self, inputs):
        x, mask = inputs
        real = ops.cast(mask, x.dtype)[..., None]
        count = ops.sum(real, axis=1)
        if self.mode == "average":
            return ops.sum(x * real, axis=1) / ops.maximum(count, 1.0)
        highest = ops.max(ops.where(mask[..., None], x, ops.full_like(x, float("-inf"))), axis=1)
        return ops.where(count > 0, highest, ops.zeros_like(highest))

    def compute_output_shape(self, input_shape):
        shape = input_shape[0]
        return (shape[0], shape[2])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def dense_block(x, settings: dict, name: str, units: int):
    """Dense (linear, `kernel_init`) then normalization and activation (see norm_and_activation)."""
    init = kernel_initializer(settings["kernel_init"])
    x = keras.layers.Dense(width_for(settings, units), kernel_initializer=init, name=name)(x)
    return norm_and_activation(x, settings, name)


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
