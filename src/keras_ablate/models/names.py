"""Names the YAML may use for models, activations, normalizations and optimizers (no TensorFlow here)."""

from __future__ import annotations

# architecture -> "module:builder"; builders are imported only when a run trains.
ARCHITECTURES: dict[str, str] = {
    "cnn": "keras_ablate.models.cnn:build_cnn",
    "rnn": "keras_ablate.models.recurrent:build_recurrent",
    "lstm": "keras_ablate.models.recurrent:build_recurrent",
    "gru": "keras_ablate.models.recurrent:build_recurrent",
    "mlp": "keras_ablate.models.mlp:build_mlp",
}

# Recurrent architectures (their layers are named rnn_0, rnn_1, ... whatever the cell).
RECURRENT: set[str] = {"rnn", "lstm", "gru"}

ACTIVATIONS: tuple[str, ...] = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "linear")

NORMALIZATIONS: tuple[str, ...] = ("none", "batch", "layer")

OPTIMIZERS: tuple[str, ...] = ("adam", "sgd", "rmsprop", "adamw")

CLIP_KINDS: tuple[str, ...] = ("value", "norm", "global_norm")
