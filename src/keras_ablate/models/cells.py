"""Configurable recurrent cells: LSTM gate ablations, normalization inside the recurrence, maxout candidates.

Conventions and documented choices:

- `ZooCell(kind='rnn' | 'lstm' | 'gru')` is wrapped in `keras.layers.RNN`. Its first state is
  h (state_size [units] or [units, units] for (h, c)), as in Keras's own cells. The gate and
  candidate projections are fused: one input kernel and one recurrent kernel hold all blocks,
  so a step costs two matmuls whatever the variant.
- LSTM gates are `learned` or forced to a constant 0.0 / 1.0; `coupled=True` is CIFG (f = 1 - i).
  A forced gate has no weights. With f=0, i=1, o=1 the cell computes h = tanh(tanh(Wx + Uh + b)).
- `normalization='layer'` (Ba et al. 2016, their LSTM eqs. 20-22): the input term Wx and the
  recurrent term Uh are layer-normalized *separately*, each gate block (and the candidate
  block) over its own units at every timestep, each term with its own gain (init 1):
  pre = g_x * LN(Wx) + g_h * LN(Uh) + b. The LSTM output reads the normalized cell,
  h = o * act(g_c * LN(c) + b_c), while the carried c stays unnormalized. The GRU candidate is
  g_x * LN(Wx) + r * (g_h * LN(Uh)) + b (the reset gate applied to the recurrent term, as this
  cell defines it); the plain RNN is g_x * LN(Wx) + g_h * LN(Uh) + b.
- `normalization='layer_sum'`: each block of the *sum* a = Wx + Uh (for the GRU candidate,
  Wx + r * Uh) is normalized, then scaled by one gain and shifted by the bias:
  pre = g * LN(Wx + Uh) + b, and c is not normalized. For the plain RNN this is exactly Ba et
  al.'s vanilla-RNN equation; inside an LSTM it is a different model, which trains far slower
  with small embeddings (std(Wx)/std(Uh) ~ 0.08 at init, so the sum drowns the input).
  Gains and biases are shared over time; LN uses Keras's epsilon 1e-3 inside the square root.
- `normalization='batch'` (Cooijmans et al. 2016): Wx and Uh are batch-normalized separately,
  each with its own scale (init `bn_gamma_init`, 0.1 by default) and no shift (the bias is the
  shift). Training uses the statistics of the current batch at the current timestep.
  Inference statistics: one moving mean/variance per term, *shared over time*, updated at every
  timestep with `bn_momentum` (0.99), so they average roughly the last 100 (batch, timestep)
  statistics. This is simpler than the paper's per-timestep population statistics and works
  for any sequence length; it is what `training=False` (validation, probes) uses. On padded
  text, statistics count only the examples that are real at each timestep, and a timestep
  with no real example does not update the moving averages. A quirk:
  Keras's TF loop calls the step once more at time zero to learn the output shape, so the
  in-loop (recurrent-term) statistics get one extra update from t = 0 per batch.
- `ZooRNN` (the layer the registry builds) computes x @ kernel for the whole sequence before
  the loop (and, for batch norm, its per-timestep normalization and exactly T moving-average
  updates in closed form): same outputs as keras.layers.RNN(cell), one matmul per step fewer.
- Maxout candidate (Goodfellow et al. 2013): the candidate block has units * k columns; unit j
  is the max over columns j*k .. j*k+k-1 (consecutive pieces, as TF Addons' Maxout). The LSTM
  cell output then uses tanh(c), since maxout cannot act on c without changing its width.
- `gate_values(inputs, states)` returns the gates of one step as (batch, units) tensors:
  forget/input/output/candidate (LSTM), update/reset/candidate (GRU), candidate (RNN); forced
  gates come back as constant tensors. The module function `gate_values(cell, ...)` does the
  same for Keras's built-in LSTMCell / GRUCell / SimpleRNNCell from their weights.

Over 400 lines because ZooCell is one Keras layer whose step serves every variant (rnn, lstm,
gru x forced gates x three normalizations x maxout) and ZooRNN precomputes that same step for a
whole sequence: split across files, one recurrence would be read in pieces.
"""

from __future__ import annotations

import keras
from keras import ops
from keras.src import backend as keras_backend  # backend.rnn: the loop keras.layers.RNN itself runs

# architecture name -> (cell kind, gate configuration) for the recurrent registry entries.
VARIANTS: dict[str, tuple[str, dict]] = {
    "rnn": ("rnn", {}),
    "gru": ("gru", {}),
    "lstm": ("lstm", {}),
    "lstm_nig": ("lstm", {"input_gate": 1.0}),
    "lstm_nfg": ("lstm", {"forget_gate": 1.0}),
    "lstm_nog": ("lstm", {"output_gate": 1.0}),
    "lstm_cifg": ("lstm", {"coupled": True}),
    "lstm_as_rnn": ("lstm", {"forget_gate": 0.0, "input_gate": 1.0, "output_gate": 1.0}),
}

_EPSILON = 1e-3  # Keras's LayerNormalization / BatchNormalization default.


def _gate_mode(name: str, value) -> str | float:
    if value == "learned":
        return value
    if value in (0, 1):
        return float(value)
    raise ValueError(f"{name} must be 'learned', 0 or 1, got {value!r}")


@keras.saving.register_keras_serializable(package="keras_ablate")
class ZooCell(keras.layers.Layer):
    """One recurrent cell for rnn / lstm / gru with forced gates, in-cell normalization and maxout."""

    def __init__(
        self,
        units: int,
        kind: str = "lstm",
        activation="tanh",
        forget_gate="learned",
        input_gate="learned",
        output_gate="learned",
        coupled: bool = False,
        normalization: str = "none",
        maxout_pieces: int = 2,
        forget_bias: float = 1.0,
        bn_gamma_init: float = 0.1,
        bn_momentum: float = 0.99,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kind not in ("rnn", "lstm", "gru"):
            raise ValueError(f"kind must be rnn, lstm or gru, got '{kind}'")
        if normalization not in ("none", "layer", "layer_sum", "batch"):
            raise ValueError(
                f"normalization must be none, layer, layer_sum or batch, got '{normalization}'"
            )
        self.units, self.kind, self.normalization = int(units), kind, normalization
        self.activation_name = activation if isinstance(activation, str) else None
        self.maxout = activation == "maxout"
        self.pieces = int(maxout_pieces) if self.maxout else 1
        self.activation = keras.activations.get("tanh" if self.maxout else activation)
        self.modes = {
            "forget": _gate_mode("forget_gate", forget_gate),
            "input": _gate_mode("input_gate", input_gate),
            "output": _gate_mode("output_gate", output_gate),
        }
        self.coupled = bool(coupled)
        if self.coupled and (self.modes["input"] != "learned" or self.modes["forget"] != "learned"):
            raise ValueError(
                "coupled (CIFG) needs learned input and forget gates: f is derived as 1 - i"
            )
        if kind == "lstm":
            self.gate_names = [
                g
                for g in ("input", "forget", "output")
                if self.modes[g] == "learned" and not (g == "forget" and coupled)
            ]
        else:
            self.gate_names = ["update", "reset"] if kind == "gru" else []
        self.forget_bias, self.bn_gamma_init, self.bn_momentum = (
            float(forget_bias),
            float(bn_gamma_init),
            bn_momentum,
        )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.state_size = [self.units, self.units] if kind == "lstm" else [self.units]
        self.output_size = self.units
        self.n_gate_columns = len(self.gate_names) * self.units
        self.n_columns = self.n_gate_columns + self.units * self.pieces

    def build(self, input_shape):
        columns = self.n_columns
        self.kernel = self.add_weight(
            shape=(input_shape[-1], columns), initializer=self.kernel_initializer, name="kernel"
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, columns),
            initializer=self.recurrent_initializer,
            name="recurrent_kernel",
        )
        self.bias = self.add_weight(shape=(columns,), initializer=self._bias_init, name="bias")
        if self.normalization == "layer":
            # Ba et al. (2016): one gain per normalized term (their LN's shift is the bias).
            self.input_gain = self.add_weight(
                shape=(columns,), initializer="ones", name="input_gain"
            )
            self.recurrent_gain = self.add_weight(
                shape=(columns,), initializer="ones", name="recurrent_gain"
            )
            if self.kind == "lstm":
                self.cell_gain = self.add_weight(
                    shape=(self.units,), initializer="ones", name="cell_gain"
                )
                self.cell_bias = self.add_weight(
                    shape=(self.units,), initializer="zeros", name="cell_bias"
                )
        if self.normalization == "layer_sum":
            self.gain = self.add_weight(shape=(columns,), initializer="ones", name="gain")
        if self.normalization == "batch":
            for term in ("input", "recurrent"):
                gamma = keras.initializers.Constant(self.bn_gamma_init)
                setattr(
                    self,
                    f"{term}_gamma",
                    self.add_weight(shape=(columns,), initializer=gamma, name=f"{term}_gamma"),
                )
                for stat, init in (("mean", "zeros"), ("variance", "ones")):
                    variable = self.add_weight(
                        shape=(columns,), initializer=init, trainable=False, name=f"{term}_{stat}"
                    )
                    setattr(self, f"{term}_moving_{stat}", variable)

    def _bias_init(self, shape, dtype=None):
        bias = self.bias_initializer(shape, dtype=dtype)
        if "forget" not in self.gate_names or self.forget_bias == 0.0:
            return bias
        start = self.gate_names.index("forget") * self.units
        mask = ops.concatenate(
            [
                ops.zeros((start,)),
                ops.ones((self.units,)),
                ops.zeros((shape[0] - start - self.units,)),
            ]
        )
        return bias * (1.0 - mask) + self.forget_bias * mask

    # -- the step ------------------------------------------------------------------------------

    def call(self, inputs, states, training=False, weight=None):
        """One step; `weight` (batch, 1), 1 on real tokens and 0 on padding, is for callers that
        step the cell themselves (the probes): batch-norm statistics then skip padded examples."""
        h, new_states, _ = self._step(inputs, states, training, weight=weight)
        return h, new_states

    def gate_values(self, inputs, states) -> dict:
        """Gate activations of one step on (inputs, states) at inference (no statistics updated)."""
        return self._step(inputs, states, training=False)[2]

    def _step(self, inputs, states, training, projected=False, weight=None):
        """One step.

        Args:
            inputs: (batch, features), or with `projected` the normalized x @ kernel (see
                `project_sequence`).
            weight: None, or (batch, 1) floats, 1 where this step is a real token and 0 on
                padding: batch-norm statistics then count real examples only.
        """
        states = states if isinstance(states, (list, tuple)) else [states]
        h = states[0]
        x_part = inputs if projected else self._input_term(inputs, training, weight)
        h_part = ops.matmul(h, self.recurrent_kernel)
        if self.normalization == "batch":
            h_part = self._batch_norm(h_part, "recurrent", training, weight)
        elif self.normalization == "layer":
            h_part = self._layer_norm_blocks(h_part) * self.recurrent_gain
        split, units = self.n_gate_columns, self.units
        if self.kind != "gru" and self.pieces == 1:
            # Every block is `units` wide: add, normalize (layer_sum) and bias all of them in one go.
            summed = self._biased(x_part + h_part, 0, self.n_columns)
            gate_pre, candidate_pre = summed[:, :split], summed[:, split:]
        else:
            gate_pre = self._biased(x_part[:, :split] + h_part[:, :split], 0, split)
        sig = ops.sigmoid(gate_pre) if split else None
        gates = {
            name: sig[:, j * units : (j + 1) * units] for j, name in enumerate(self.gate_names)
        }
        if self.kind == "gru" or self.pieces > 1:
            recurrent_candidate = h_part[:, split:]
            if self.kind == "gru" and self.pieces == 1:
                recurrent_candidate = gates["reset"] * recurrent_candidate
            elif self.kind == "gru":
                # Broadcast r over the pieces of each unit (ops.repeat's gradient is not XLA-compilable).
                pieces = ops.reshape(recurrent_candidate, (-1, units, self.pieces))
                recurrent_candidate = ops.reshape(
                    gates["reset"][:, :, None] * pieces, (-1, units * self.pieces)
                )
            candidate_pre = self._biased(
                x_part[:, split:] + recurrent_candidate, split, self.n_columns
            )
        candidate = self._candidate(candidate_pre)
        gates["candidate"] = candidate
        if self.kind == "rnn":
            return candidate, [candidate], gates
        if self.kind == "gru":
            update = gates["update"]
            h_new = update * h + (1.0 - update) * candidate
            return h_new, [h_new], gates
        c = states[1]
        for name in ("input", "forget", "output"):
            if name not in gates:
                gates[name] = (
                    1.0 - gates["input"]
                    if name == "forget" and self.coupled
                    else ops.full_like(h, self.modes[name])
                )
        # Forced constants are Python floats here so the graph drops the dead terms.
        i = gates["input"] if self.modes["input"] == "learned" else self.modes["input"]
        f = gates["forget"] if self.modes["forget"] == "learned" else self.modes["forget"]
        o = gates["output"] if self.modes["output"] == "learned" else self.modes["output"]
        c_new = i * candidate if isinstance(f, float) and f == 0.0 else f * c + i * candidate
        # Ba et al. (2016, eq. 22): the output reads tanh(LN(c_t)); the carried c_t stays as it is.
        c_out = (
            _layer_norm(c_new) * self.cell_gain + self.cell_bias
            if self.normalization == "layer"
            else c_new
        )
        h_new = (
            self.activation(c_out)
            if isinstance(o, float) and o == 1.0
            else o * self.activation(c_out)
        )
        return h_new, [h_new, c_new], gates

    def _input_term(self, inputs, training, weight=None):
        """x @ kernel, normalized as `normalization` says for the input term (batch, or layer)."""
        x_part = ops.matmul(inputs, self.kernel)
        if self.normalization == "batch":
            return self._batch_norm(x_part, "input", training, weight)
        if self.normalization == "layer":
            return self._layer_norm_blocks(x_part) * self.input_gain
        return x_part

    def _layer_norm_blocks(self, term):
        """Layer-normalize each gate block (units wide) and the candidate block (units x pieces) on its own."""
        split = self.n_gate_columns
        if self.pieces == 1:
            return _layer_norm(term, self.units)
        candidate = _layer_norm(term[:, split:])
        if not split:
            return candidate
        return ops.concatenate([_layer_norm(term[:, :split], self.units), candidate], axis=-1)

    def _biased(self, summed, start, stop):
        """Add the bias to columns [start, stop) of a summed pre-activation (for `layer_sum`, after
        normalizing each block of the sum and scaling it by its gain)."""
        if self.normalization == "layer_sum":
            width = self.units if start < self.n_gate_columns else self.units * self.pieces
            summed = _layer_norm(summed, width) * self.gain[start:stop]
        return summed + self.bias[start:stop]

    def _candidate(self, pre):
        if not self.maxout:
            return self.activation(pre)
        return ops.max(ops.reshape(pre, (-1, self.units, self.pieces)), axis=-1)

    def _batch_norm(self, term, which: str, training, weight=None):
        moving_mean = getattr(self, f"{which}_moving_mean")
        moving_variance = getattr(self, f"{which}_moving_variance")
        if training:
            mean, variance, counted = _batch_moments(term, weight, axis=0)
            m = self.bn_momentum
            new_mean = moving_mean * m + ops.stop_gradient(mean) * (1.0 - m)
            new_variance = moving_variance * m + ops.stop_gradient(variance) * (1.0 - m)
            if counted is not None:
                # A step where every example is padding leaves the statistics as they were.
                new_mean = ops.where(counted, new_mean, moving_mean)
                new_variance = ops.where(counted, new_variance, moving_variance)
            moving_mean.assign(new_mean)
            moving_variance.assign(new_variance)
        else:
            mean, variance = moving_mean, moving_variance
        # Scale per column first: one (columns,) vector instead of two full-size products.
        return (term - mean) * (ops.rsqrt(variance + _EPSILON) * getattr(self, f"{which}_gamma"))

    def project_sequence(self, sequences, training, go_backwards=False, mask=None):
        """The input term x_t @ kernel for every t at once (one big matmul instead of one per step).

        Layer norm (`layer`) normalizes it here too, per example and timestep. With batch norm,
        each timestep is normalized with its own batch statistics, over the examples that are
        real at that step when `mask` (batch, time) is given, as in the step; the moving
        averages receive the same updates the step would make, in closed form: over the counted
        steps t (processing order, a step with no real example is not counted),
        m_T = mu^n m_0 + (1 - mu) sum_t mu^(n_after(t)) s_t, n = counted steps.
        """
        projected = ops.matmul(sequences, self.kernel)  # (batch, time, columns)
        if self.normalization == "layer":
            return self._layer_norm_blocks_sequence(projected)
        if self.normalization != "batch":
            return projected
        if not training:
            mean, variance = self.input_moving_mean, self.input_moving_variance
        else:
            weight = None if mask is None else ops.cast(mask, projected.dtype)[..., None]
            mean, variance, counted = _batch_moments(projected, weight, axis=0, keepdims=True)
            steps = projected.shape[1]
            m = self.bn_momentum
            if counted is None:
                exponents = ops.arange(steps - 1, -1, -1, dtype="float32")
                if go_backwards:
                    exponents = ops.flip(exponents, axis=0)
                weights, decay = (1.0 - m) * m**exponents, m**steps
            else:
                counted = ops.cast(ops.reshape(counted, (steps,)), "float32")
                order = ops.flip(counted, axis=0) if go_backwards else counted
                # Counted steps processed after each step: a reversed cumulative sum, exclusive.
                after = ops.flip(ops.cumsum(ops.flip(order, axis=0)), axis=0) - order
                after = ops.flip(after, axis=0) if go_backwards else after
                weights, decay = (1.0 - m) * m**after * counted, m ** ops.sum(counted)
            for moving, stat in (
                (self.input_moving_mean, mean[0]),
                (self.input_moving_variance, variance[0]),
            ):
                update = ops.sum(ops.stop_gradient(stat) * weights[:, None], axis=0)
                moving.assign(moving * decay + update)
        return (projected - mean) * (ops.rsqrt(variance + _EPSILON) * self.input_gamma)

    def _layer_norm_blocks_sequence(self, projected):
        shape = ops.shape(projected)
        flat = ops.reshape(projected, (-1, projected.shape[-1]))
        return ops.reshape(self._layer_norm_blocks(flat) * self.input_gain, shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            kind=self.kind,
            activation=self.activation_name or "tanh",
            forget_gate=self.modes["forget"],
            input_gate=self.modes["input"],
            output_gate=self.modes["output"],
            coupled=self.coupled,
            normalization=self.normalization,
            maxout_pieces=self.pieces if self.maxout else 2,
            forget_bias=self.forget_bias,
            bn_gamma_init=self.bn_gamma_init,
            bn_momentum=self.bn_momentum,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            recurrent_initializer=keras.initializers.serialize(self.recurrent_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
        )
        return config


def _layer_norm(z, width: int | None = None):
    """Normalize each `width`-wide block of the last axis of a (batch, columns) tensor to mean 0,
    variance 1 (no gain, no shift); `width=None` normalizes the whole last axis."""
    columns = z.shape[-1]
    width = width or columns
    blocks = ops.reshape(z, (-1, columns // width, width))
    # Mean and mean square are independent reductions, so XLA fuses them into one pass.
    mean = ops.mean(blocks, axis=-1, keepdims=True)
    variance = ops.maximum(
        ops.mean(ops.square(blocks), axis=-1, keepdims=True) - ops.square(mean), 0.0
    )
    return ops.reshape((blocks - mean) * ops.rsqrt(variance + _EPSILON), (-1, columns))


def _batch_moments(term, weight=None, axis=0, keepdims=False):
    """Mean and variance of `term` over the batch `axis`, counting only examples with weight 1.

    Returns:
        (mean, variance, counted): `counted` (bool) says where at least one example was real;
        it is None when `weight` is None (every example counts).
    """
    if weight is None:
        mean = ops.mean(term, axis=axis, keepdims=keepdims)
        square = ops.mean(ops.square(term), axis=axis, keepdims=keepdims)
        return mean, ops.maximum(square - ops.square(mean), 0.0), None
    count = ops.sum(weight, axis=axis, keepdims=keepdims)
    safe = ops.maximum(count, 1.0)
    mean = ops.sum(term * weight, axis=axis, keepdims=keepdims) / safe
    square = ops.sum(ops.square(term) * weight, axis=axis, keepdims=keepdims) / safe
    return mean, ops.maximum(square - ops.square(mean), 0.0), count > 0


def gate_values(cell, inputs, states) -> dict:
    """Gate activations of one step for any recurrent cell: ours, or Keras's LSTM / GRU / SimpleRNN cells.

    Args:
        cell: a built cell (`layer.cell` of a recurrent layer).
        inputs: (batch, features) inputs of one timestep.
        states: the cell's states (h first), a tensor or a list.

    Returns:
        name -> (batch, units) tensor, with the names ZooCell.gate_values uses.
    """
    if hasattr(cell, "gate_values"):
        return cell.gate_values(inputs, states)
    states = states if isinstance(states, (list, tuple)) else [states]
    h = states[0]
    x_part = ops.matmul(inputs, cell.kernel)
    h_part = ops.matmul(h, cell.recurrent_kernel)
    act, gate = cell.activation, getattr(cell, "recurrent_activation", None)
    if isinstance(cell, keras.layers.LSTMCell):
        z = x_part + h_part + (cell.bias if cell.use_bias else 0.0)
        zi, zf, zc, zo = ops.split(z, 4, axis=-1)  # Keras's order: i, f, c, o
        return {"input": gate(zi), "forget": gate(zf), "candidate": act(zc), "output": gate(zo)}
    if isinstance(cell, keras.layers.GRUCell):
        if cell.use_bias:
            input_bias, recurrent_bias = (
                (cell.bias[0], cell.bias[1]) if cell.reset_after else (cell.bias, None)
            )
            x_part = x_part + input_bias
        xz, xr, xh = ops.split(x_part, 3, axis=-1)  # Keras's order: update z, reset r, candidate
        if cell.reset_after:
            if cell.use_bias:
                h_part = h_part + recurrent_bias
            hz, hr, hh = ops.split(h_part, 3, axis=-1)
            update, reset = gate(xz + hz), gate(xr + hr)
            candidate = act(xh + reset * hh)
        else:
            hz, hr, _ = ops.split(h_part, 3, axis=-1)
            update, reset = gate(xz + hz), gate(xr + hr)
            candidate = act(xh + ops.matmul(reset * h, cell.recurrent_kernel[:, 2 * cell.units :]))
        return {"update": update, "reset": reset, "candidate": candidate}
    if isinstance(cell, keras.layers.SimpleRNNCell):
        return {"candidate": act(x_part + h_part + (cell.bias if cell.use_bias else 0.0))}
    raise TypeError(f"no gate values for cell type {type(cell).__name__}")


@keras.saving.register_keras_serializable(package="keras_ablate")
class ZooRNN(keras.layers.RNN):
    """keras.layers.RNN that projects the whole input sequence before the loop when its cell is a ZooCell.

    Same results as keras.layers.RNN(cell) (tested), one matmul per step fewer. Any other cell,
    e.g. a probe wrapped around a ZooCell, runs through the ordinary RNN loop on raw inputs.
    """

    def inner_loop(self, sequences, initial_state, mask, training=False):
        cell = self.cell
        if type(cell) is not ZooCell or self.unroll:
            return super().inner_loop(sequences, initial_state, mask, training=training)
        projected = cell.project_sequence(
            sequences, training, go_backwards=self.go_backwards, mask=mask
        )
        # Batch norm of the recurrent term needs to know, inside the loop, which examples are
        # real at this step: the mask rides along as one extra input column.
        weighted = mask is not None and cell.normalization == "batch" and training
        if weighted:
            projected = ops.concatenate(
                [projected, ops.cast(mask, projected.dtype)[..., None]], axis=-1
            )

        def step(inputs, states):
            weight = inputs[:, -1:] if weighted else None
            inputs = inputs[:, :-1] if weighted else inputs
            output, new_states, _ = cell._step(
                inputs, states, training, projected=True, weight=weight
            )
            return output, new_states

        if not isinstance(initial_state, (list, tuple)):
            initial_state = [initial_state]
        return keras_backend.rnn(
            step,
            projected,
            list(initial_state),
            go_backwards=self.go_backwards,
            mask=mask,
            unroll=False,
            input_length=sequences.shape[1],
            zero_output_for_mask=self.zero_output_for_mask,
            return_all_outputs=self.return_sequences,
        )
