"""Names the YAML may use (registries) and the grammar of level strings ('norm:1.0', 'spectral_radius:1.1').

The floor of the package: models, training, analysis, report and the rest of config read names
and parse levels here. It imports no other module of the project except `errors` (itself a leaf
with no project imports), and no TensorFlow.
"""

from __future__ import annotations

from keras_ablate.errors import suggest

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

# Recurrent-kernel initializations (`init`) and dense/conv kernel initializations (`kernel_init`).
INIT_KINDS: tuple[str, ...] = ("glorot_uniform", "orthogonal", "identity", "spectral_radius")
KERNEL_INIT_KINDS: tuple[str, ...] = ("glorot_uniform", "he_normal", "normal")

# Grid axes may also vary a dataset option: `dataset.seq_len: [10, 50]`; per-run tables name
# those columns the same way (`dataset.seq_len`).
DATASET_AXIS_PREFIX = "dataset."


def parse_clip(text: str) -> tuple[str, float | None]:
    """Parse a clip level: 'none', 'value:0.5', 'norm:1.0' or 'global_norm:5'.

    Returns:
        (kind, threshold) with kind in {'none', 'value', 'norm', 'global_norm'}.
    """
    text = str(text).strip()
    if text == "none":
        return "none", None
    kind, sep, value = text.partition(":")
    if not sep or kind not in CLIP_KINDS:
        raise ValueError(
            f"clip must be 'none' or KIND:THRESHOLD with KIND in {', '.join(CLIP_KINDS)} "
            f"(e.g. 'norm:1.0'), got '{text}'{suggest(kind, CLIP_KINDS)}"
        )
    try:
        threshold = float(value)
    except ValueError:
        raise ValueError(f"clip threshold must be a number, got '{value}' in '{text}'") from None
    if not threshold > 0:
        raise ValueError(f"clip threshold must be > 0, got {threshold} in '{text}'")
    return kind, threshold


def _parse_scaled(
    text: str, setting: str, plain: tuple[str, ...], scaled: str, what: str, example: str
):
    """Shared parser for 'name' or 'scaled:VALUE' levels; returns (name, value or None)."""
    text = str(text).strip()
    if text in plain:
        return text, None
    kind, sep, value = text.partition(":")
    choices = (*plain, scaled)
    if kind != scaled or not sep:
        raise ValueError(
            f"{setting} must be one of {', '.join(plain)} or {scaled}:{what} (e.g. '{example}'), "
            f"got '{text}'{suggest(kind, choices)}"
        )
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{setting} {what} must be a number, got '{value}' in '{text}'") from None
    if not number > 0 or number == float("inf"):
        raise ValueError(f"{setting} {what} must be a finite number > 0, got {number} in '{text}'")
    return kind, number


def parse_init(text: str) -> tuple[str, float | None]:
    """Parse a recurrent `init` level: 'glorot_uniform', 'orthogonal', 'identity' or 'spectral_radius:R'.

    Returns:
        (kind, radius) with radius None except for 'spectral_radius'.
    """
    return _parse_scaled(
        text, "init", INIT_KINDS[:3], "spectral_radius", "RADIUS", "spectral_radius:1.1"
    )


def parse_kernel_init(text: str) -> tuple[str, float | None]:
    """Parse a dense/conv `kernel_init` level: 'glorot_uniform', 'he_normal' or 'normal:SIGMA'.

    Returns:
        (kind, sigma) with sigma None except for 'normal'.
    """
    return _parse_scaled(
        text, "kernel_init", KERNEL_INIT_KINDS[:2], "normal", "SIGMA", "normal:0.05"
    )


def spell_level(kind: str, value: float | None) -> str:
    """The one spelling of a parsed level, so 'norm:1' and 'norm:1.0' give the same run_id."""
    return kind if value is None else f"{kind}:{value!r}"
