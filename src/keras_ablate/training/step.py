"""The instrumented train step: per-step loss, gradient norms before/after clipping, clip flag, divergence."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_ablate.config.levels import parse_clip

# Per-step quantities, in column order, before the per-layer norms.
BASE_QUANTITIES = (
    "loss",
    "grad/global_norm",
    "grad/global_norm_clipped",
    "grad/clipped",
    "grad/cosine",
    "grad/nonfinite",
)


def clip_gradients(grads: list[tf.Tensor], clip: str) -> tuple[list[tf.Tensor], tf.Tensor]:
    """Clip as the Keras optimizer does for `clip` and say whether clipping changed anything.

    The formulas are Keras's own (BaseOptimizer._clip_gradients): per-variable
    `x * c / max(||x||, c)` for norm, `x * c * min(1/||g||, 1/c)` for global_norm, and
    `clip(x, -c, c)` for value. We recompute them here (with public ops) only to *measure*;
    the update itself still goes through `optimizer.apply`, which clips for real.

    Returns:
        (clipped gradients, a bool scalar: did clipping fire).
    """
    kind, c = parse_clip(clip)
    if kind == "none":
        return grads, tf.constant(False)
    if kind == "norm":
        norms = [tf.norm(g) for g in grads]
        clipped = [g * c / tf.maximum(n, c) for g, n in zip(grads, norms, strict=True)]
        return clipped, tf.reduce_any(tf.stack([n > c for n in norms]))
    if kind == "global_norm":
        norm = tf.linalg.global_norm(grads)
        scale = c * tf.minimum(1.0 / norm, 1.0 / c)
        scale = scale + (norm - norm)  # NaN/Inf norms make the scale NaN, as in Keras.
        return [g * scale for g in grads], norm > c
    # value
    clipped = [tf.clip_by_value(g, -c, c) for g in grads]
    return clipped, tf.reduce_any(tf.stack([tf.reduce_any(tf.abs(g) > c) for g in grads]))


# Keras clips in the gradients' float32: a sum of squares above this overflows to inf there.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _keras_norm(square: tf.Tensor) -> tf.Tensor:
    """The norm Keras's float32 clipping computes from a float64 sum of squares: inf where the
    float32 sum overflows (entries from ~1.8e19), else its square root."""
    return tf.where(square > _FLOAT32_MAX, tf.constant(np.inf, tf.float64), tf.sqrt(square))


def clip_statistics(
    grads: list[tf.Tensor], squares: list[tf.Tensor], clip: str
) -> tuple[list[tf.Tensor], tf.Tensor, tf.Tensor]:
    """Per-variable squared norms after clipping, <raw, clipped> and the fired flag.

    Same numbers as measuring clip_gradients' output, but norm and global_norm clipping
    only rescale, so their statistics follow from the raw squared norms in closed form:
    no clipped copy of every gradient, a smaller graph and a faster XLA compile per run.

    Where the float32 norm Keras clips with overflows (a finite gradient with entries from
    ~1.8e19), the statistics follow Keras, not the float64 norm: norm clipping scales that
    variable to 0, global_norm clipping gives NaN (the update Keras applies is NaN).

    Args:
        grads: dense gradients; squares: their squared norms (sum of squares per variable),
            in float64 (see InstrumentedModel); the results are float64 too.
    """
    kind, c = parse_clip(clip)
    if kind == "none":
        return squares, tf.add_n(squares), tf.constant(False)
    if kind == "norm":
        # Each variable is scaled by s = c / max(||g||, c): ||s g||^2 = s^2 ||g||^2, <g, s g> = s ||g||^2.
        scales = [c / tf.maximum(_keras_norm(q), c) for q in squares]
        fired = tf.reduce_any(tf.stack([tf.sqrt(q) > c for q in squares]))
        return (
            [s * s * q for s, q in zip(scales, squares, strict=True)],
            tf.add_n([s * q for s, q in zip(scales, squares, strict=True)]),
            fired,
        )
    if kind == "global_norm":
        total = tf.add_n(squares)
        norm = _keras_norm(total)
        scale = c * tf.minimum(1.0 / norm, 1.0 / c) + (
            norm - norm
        )  # NaN/Inf norms give NaN, as in Keras.
        return [scale * scale * q for q in squares], scale * total, norm > c
    clipped, fired = clip_gradients(grads, clip)
    sq_c = [squared_norm(g) for g in clipped]
    dot = tf.add_n(
        [
            tf.reduce_sum(tf.cast(g, tf.float64) * tf.cast(h, tf.float64))
            for g, h in zip(grads, clipped, strict=True)
        ]
    )
    return sq_c, dot, fired


def squared_norm(gradient) -> tf.Tensor:
    """Sum of squares of a gradient (dense or IndexedSlices, made dense first), in float64.

    In float32 the squares of entries below ~1e-19 flush to zero, so the norm of a vanishing
    gradient would read exactly 0 while the gradient itself is not (KERAS_NOTES.md).
    """
    return tf.reduce_sum(tf.square(tf.cast(tf.convert_to_tensor(gradient), tf.float64)))


def optimizer_clip_kwargs(clip: str) -> dict:
    """Map a clip level to the Keras optimizer argument that implements it."""
    kind, c = parse_clip(clip)
    return {
        "none": {},
        "value": {"clipvalue": c},
        "norm": {"clipnorm": c},
        "global_norm": {"global_clipnorm": c},
    }[kind]


class InstrumentedModel(keras.Model):
    """A functional model whose train step also writes one row of measurements per step.

    Rows go into a preallocated variable (capacity = planned steps), so recording works
    under XLA and with steps_per_execution > 1 and costs no host round trip per step.
    Gradients are made dense before measuring and applying, so the recorded norm of the
    embedding gradient is the true norm (an IndexedSlices norm would count repeated rows
    separately) and the optimizer clips exactly what we measure. Squared norms are summed in
    float64, so tiny gradients do not read 0 (squares below ~1e-38 flush to zero in float32);
    rows are stored in float32.
    """

    def configure_instruments(self, clip: str, capacity: int) -> None:
        """Call after compile and before fit. `capacity`: the number of steps to record."""
        self._clip_level = clip
        self._layer_names, self._var_layer = _group_variables(self)
        self.quantities = (
            list(BASE_QUANTITIES)
            + [f"grad/norm/{n}" for n in self._layer_names]
            + [f"grad/norm_clipped/{n}" for n in self._layer_names]
        )
        self._records = tf.Variable(
            tf.fill([capacity, len(self.quantities)], np.nan), trainable=False, name="step_records"
        )
        self._step = tf.Variable(0, dtype=tf.int64, trainable=False, name="record_step")
        self._first_nonfinite = tf.Variable(
            -1, dtype=tf.int64, trainable=False, name="first_nonfinite"
        )
        self._capacity = capacity

    def reset_instruments(self) -> None:
        """Empty the step records, as after configure_instruments (for a reused model)."""
        self._records.assign(tf.fill(tf.shape(self._records), np.float32(np.nan)))
        self._step.assign(0)
        self._first_nonfinite.assign(-1)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
        self._loss_tracker.update_state(loss, sample_weight=tf.shape(tf.nest.flatten(x)[0])[0])
        variables = self.trainable_variables
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]
        sq = [squared_norm(g) for g in grads]
        sq_c, dot, fired = clip_statistics(grads, sq, self._clip_level)
        norm, norm_c = tf.sqrt(tf.add_n(sq)), tf.sqrt(tf.add_n(sq_c))
        # Unclipped steps have cosine exactly 1; computing it would only add rounding.
        cosine = tf.where(fired, dot / (norm * norm_c), tf.constant(1.0, tf.float64))
        layer_norms = self._per_layer(sq)
        layer_norms_c = self._per_layer(sq_c)
        # The applied update is not finite either where Keras's float32 clipping overflowed.
        nonfinite = tf.logical_not(
            tf.math.is_finite(loss) & tf.math.is_finite(norm) & tf.math.is_finite(norm_c)
        )

        row = tf.cast(
            tf.stack(
                [
                    tf.cast(loss, tf.float64),
                    norm,
                    norm_c,
                    tf.cast(fired, tf.float64),
                    cosine,
                    tf.cast(nonfinite, tf.float64),
                ]
                + layer_norms
                + layer_norms_c
            ),
            tf.float32,
        )
        step = self._step
        index = tf.minimum(step, self._capacity - 1)
        self._records.scatter_nd_update(tf.reshape(index, [1, 1]), tf.reshape(row, [1, -1]))
        self._first_nonfinite.assign(
            tf.where((self._first_nonfinite < 0) & nonfinite, step, self._first_nonfinite)
        )
        step.assign_add(1)

        self.optimizer.apply(grads, variables)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _per_layer(self, squares: list[tf.Tensor]) -> list[tf.Tensor]:
        sums = {name: [] for name in self._layer_names}
        for s, layer in zip(squares, self._var_layer, strict=True):
            sums[layer].append(s)
        return [tf.sqrt(tf.add_n(sums[name])) for name in self._layer_names]

    def step_records(self) -> tuple[list[str], np.ndarray]:
        """(column names, rows for the steps taken so far)."""
        n = int(min(self._step.numpy(), self._capacity))
        return self.quantities, self._records.numpy()[:n]

    @property
    def first_nonfinite_step(self) -> int | None:
        k = int(self._first_nonfinite.numpy())
        return None if k < 0 else k


def _group_variables(model: keras.Model) -> tuple[list[str], list[str]]:
    """Layer names that own trainable variables (input side first), and each variable's layer."""
    owner: dict[int, str] = {}
    order: list[str] = []
    for layer in model.layers:
        for v in layer.trainable_variables:
            if id(v) not in owner:
                owner[id(v)] = layer.name
                if layer.name not in order:
                    order.append(layer.name)
    return order, [owner[id(v)] for v in model.trainable_variables]


class StopOnDivergence(keras.callbacks.Callback):
    """Stop fit at the first non-finite loss or gradient; the run is then recorded as diverged."""

    def on_train_batch_end(self, batch, logs=None):
        if self.model.first_nonfinite_step is not None:
            self.model.stop_training = True
