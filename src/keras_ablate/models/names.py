"""Names the YAML may use for models, activations, normalizations and optimizers (no TensorFlow here)."""

from __future__ import annotations

# architecture -> "module:builder"; builders are imported only when a run trains.
ARCHITECTURES: dict[str, str] = {
    "cnn": "keras_ablate.models.cnn:build_cnn",
    "rnn": "keras_ablate.models.recurrent:build_recurrent",
    "lstm": "keras_ablate.models.recurrent:build_recurrent",
    "gru": "keras_ablate.models.recurrent:build_recurrent",
    "mlp": "keras_ablate.models.mlp:build_mlp",
    # LSTM gate ablations (Greff et al. 2017); see models/cells.py.
    "lstm_nig": "keras_ablate.models.recurrent:build_recurrent",
    "lstm_nfg": "keras_ablate.models.recurrent:build_recurrent",
    "lstm_nog": "keras_ablate.models.recurrent:build_recurrent",
    "lstm_cifg": "keras_ablate.models.recurrent:build_recurrent",
    "lstm_as_rnn": "keras_ablate.models.recurrent:build_recurrent",
}

# Recurrent architectures (their layers are named rnn_0, rnn_1, ... whatever the cell).
RECURRENT: set[str] = {
    "rnn",
    "lstm",
    "gru",
    "lstm_nig",
    "lstm_nfg",
    "lstm_nog",
    "lstm_cifg",
    "lstm_as_rnn",
}

# maxout changes a layer's width (units x maxout_pieces, then max over pieces): see models/layers.py.
ACTIVATIONS: tuple[str, ...] = (
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "elu",
    "linear",
    "gelu",
    "selu",
    "maxout",
)

# layer: Ba et al.'s LSTM form inside recurrent cells (input and recurrent terms normalized
# separately); layer_sum: the summed pre-activation normalized. See models/cells.py.
NORMALIZATIONS: tuple[str, ...] = ("none", "batch", "layer", "layer_sum")

OPTIMIZERS: tuple[str, ...] = ("adam", "sgd", "rmsprop", "adamw")

CLIP_KINDS: tuple[str, ...] = ("value", "norm", "global_norm")
