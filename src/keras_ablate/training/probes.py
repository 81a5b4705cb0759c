"""Probe-batch instruments: per-timestep ||dL/dh_t||, depth profile, saturation / dead units, gates, kernel spectra.

All of them are measured on one fixed probe batch at initialization (epoch 0) and at the end
of every epoch, never inside the train step, so they cost nothing per step.

How ||dL/dh_t|| is measured: the gradient with respect to a `return_sequences` output only
sees the direct path to the loss (KERAS_NOTES.md). Instead each recurrent layer is replayed
with `ProbeCell`, which wraps the layer's own trained cell and adds a zero probe p_t to h_t
*inside* the recurrence (to the output and to the first state); dL/dp_t is then the full
backprop-through-time gradient dL/dh_t. The norm is taken over the whole probe batch and all
units: it is the norm of the gradient of the batch-mean loss with respect to the batch's h_t.
Squares are summed in float64: in float32 entries below ~1e-19 square to zero, and the norm of
a vanishing gradient read exactly 0 where the float32 gradient itself was not (KERAS_NOTES.md).

On padded text (a model with a `padding_mask`), the replay carries the state over padded steps
as training does, so dL/dh_t there is 0, and `distance` counts from each example's *last real
token*: the row at distance d sums the squared gradients of every example at its d-th real
step before its last one (`n_examples` says how many examples reach that far back), and
t = T - 1 - distance, the position that step would have under pre-padding. Without padding this
is the ordinary distance from the end. Unit health and gate values use real positions only.

The replay runs in training mode, so normalization layers use batch statistics as the train
step does; Dropout is skipped (so probes draw no random numbers and leave the training
trajectory untouched) and every non-trainable variable (moving statistics) is restored after.
Gate values (models/cells.gate_values) are recomputed for all timesteps at once from the
recorded states, in inference mode: batch-normalized cells use their moving statistics there.

Over 400 lines because every instrument reads the one replay of the model on the probe batch
(ProbeCell inside Probe): split, each part would need that replay or its bookkeeping passed in.
"""

from __future__ import annotations

import contextlib
import functools
import time

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from keras import ops
from keras.src.backend import get_keras_mask, set_keras_mask  # Keras's own mask metadata

from keras_ablate.models.cells import ZooCell, gate_values
from keras_ablate.training.probe_layers import (
    is_recurrent,
    not_replayable,
    skipped_layers,
    why_not_probed,
)
from keras_ablate.training.step import _group_variables, squared_norm

PROBE_SIZE = 64  # examples in the probe batch: the first PROBE_SIZE validation examples.
SATURATION = 0.99  # |tanh| > 0.99, sigmoid < 0.01 or > 0.99 counts as saturated.
TABLES = ("timesteps", "depth", "units", "weights")


def probe_batch(dataset, size: int = PROBE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The fixed probe batch of a dataset: its first `size` validation examples (same for every run)."""
    return dataset.x_val[:size], dataset.y_val[:size]


def mean_loss(loss_name: str):
    """(y_true, y_pred) -> scalar batch-mean loss for a Keras loss name (labels reshaped to the output)."""
    fn = keras.losses.get(loss_name)
    sparse = "sparse" in loss_name

    def loss(y_true, y_pred):
        if not sparse:
            y_true = ops.reshape(ops.cast(y_true, y_pred.dtype), ops.shape(y_pred))
        return ops.mean(fn(y_true, y_pred))

    return loss


class ProbeCell(keras.layers.Layer):
    """Wraps a built recurrent cell: input [x_t, p_t(, m_t)] -> output [h_t + p_t, other states], state h_t + p_t.

    The inner cell keeps its own weights (nothing is copied). The other states (an LSTM's c_t)
    ride along as output columns so that gate values can be recomputed afterwards for all
    timesteps at once, outside the loop and its gradient (in the loop they cost a third of the
    probe's tracing time). With `masked`, a last input column m_t (1 real, 0 padding) tells a
    batch-normalized ZooCell which examples its statistics may count, as in training.
    """

    def __init__(self, cell, units: int, masked: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.cell, self.units, self.masked = cell, int(units), bool(masked)
        # A Keras cell with (recurrent) dropout is replayed without it, as Dropout layers are:
        # the probe draws no random numbers.
        self.cell_training = not (
            getattr(cell, "dropout", 0) or getattr(cell, "recurrent_dropout", 0)
        )
        self.state_size = cell.state_size
        self.output_size = sum(_state_sizes(cell))

    def build(self, input_shape):
        self.built = True  # the inner cell is built and trained already

    def call(self, inputs, states, training=False):
        if self.masked:
            inputs, weight = inputs[:, :-1], inputs[:, -1:]
        x, probe = inputs[:, : -self.units], inputs[:, -self.units :]
        training = training and self.cell_training
        if self.masked and isinstance(self.cell, ZooCell):
            h, new_states = self.cell(x, states, training=training, weight=weight)
        else:
            h, new_states = self.cell(x, states, training=training)
        nested = isinstance(new_states, (list, tuple))
        new_list = list(new_states) if nested else [new_states]
        new_list[0] = new_list[0] + probe
        outputs = ops.concatenate([h + probe, *new_list[1:]], axis=-1)
        return outputs, new_list if nested else new_list[0]


def _state_sizes(cell) -> list[int]:
    return [int(size) for size in _as_list(cell.state_size)]


def _sequence_gates(cell, inputs, states: list) -> dict:
    """Gate values at every timestep: inputs (B, T, F), states at t-1 as (B, T, size) each -> name -> (B, T, units).

    All timesteps go through the cell's gate computation as one batch. Batch-normalized cells
    use their moving statistics here (gate_values runs in inference mode).
    """
    shape = ops.shape(inputs)
    flat = [ops.reshape(s, (-1, s.shape[-1])) for s in states]
    gates = gate_values(cell, ops.reshape(inputs, (-1, inputs.shape[-1])), flat)
    units = states[0].shape[-1]
    return {name: ops.reshape(ops.broadcast_to(value, (ops.shape(flat[0])[0], units)), (shape[0], shape[1], units))
            for name, value in gates.items()}  # fmt: skip


def _units_of(cell) -> int:
    size = cell.state_size
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def _gate_names(cell, units: int, input_dim: int) -> tuple[str, ...]:
    """Names gate_values returns for this cell (probed once on zeros), or () when it has none."""
    try:
        states = [ops.zeros((1, _units_of(cell))) for _ in range(len(_as_list(cell.state_size)))]
        return tuple(gate_values(cell, ops.zeros((1, input_dim)), states))
    except (TypeError, AttributeError):
        return ()


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _activation_kind(layer_or_cell) -> str:
    """'tanh', 'sigmoid', 'relu' or 'other': which unit-health measure applies."""
    if getattr(layer_or_cell, "maxout", False):
        return "other"
    fn = getattr(layer_or_cell, "activation", None)
    name = fn if isinstance(fn, str) else getattr(fn, "__name__", "")
    return name if name in ("tanh", "sigmoid", "relu") else "other"


class Probe:
    """Measures all probe-batch instruments of one model; build once per run, call `measure(epoch)`."""

    def __init__(self, model: keras.Model, x: np.ndarray, y: np.ndarray, loss_name: str):
        self.model, self.x, self.y = model, tf.constant(x), tf.constant(y)
        self.loss = mean_loss(loss_name)
        self.recurrent: dict[str, dict] = {}
        self.bidirectional: dict[str, dict] = {}  # Bidirectional layer -> its two directions
        self.activations: dict[str, str] = {}  # `<block>_act` layer name -> activation kind
        # A model that cannot be replayed layer by layer is called whole: no timestep rows.
        self.replay_problem = not_replayable(model)
        for layer in model.layers if self.replay_problem is None else []:
            if is_recurrent(layer) and why_not_probed(layer) is None:
                args, kwargs = _call_arguments(layer)
                masked = _mask_of(args, kwargs) is not None
                input_dim = int(args[0].shape[-1])
                if isinstance(layer, keras.layers.Bidirectional):
                    self.bidirectional[layer.name] = {
                        "return_sequences": layer.return_sequences,
                        "merge_mode": layer.merge_mode,
                    }
                    for direction in ("forward", "backward"):
                        rnn = getattr(layer, f"{direction}_layer")
                        name = f"{layer.name}/{direction}"
                        self.recurrent[name] = _probe_entry(rnn, name, masked, input_dim)
                else:
                    self.recurrent[layer.name] = _probe_entry(layer, layer.name, masked, input_dim)
            elif layer.name.endswith("_act"):
                self.activations[layer.name] = _activation_kind(layer)
        probed = {n.split("/")[0] for n in self.recurrent}
        # Recurrent layers without rows, and why (recorded in the run's summary: probe_skipped).
        self.skipped = skipped_layers(model, probed, self.replay_problem)
        self.layer_names, var_layers = _group_variables(model)
        self._var_layers = var_layers
        self._restore = [v for layer in model.layers for v in layer.non_trainable_variables]
        # tf.function counts traces per code object; a partial (no __code__) is counted on its own,
        # so one trace per run does not warn about "retracing" after a few runs in one worker.
        self._function = tf.function(
            functools.partial(Probe._forward_backward, self), autograph=False
        )
        self.seconds = 0.0

    def _replay(self, x, probes: dict):
        """Run the model layer by layer on x, recurrent layers through their ProbeCell; collect internals."""
        if self.replay_problem is not None:
            return self.model(x, training=True), {}
        values = {id(self.model.inputs[0]): x}
        internals = {}
        for layer in self.model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            args, kwargs = _call_arguments(layer, values)
            if isinstance(layer, keras.layers.Dropout):
                out = args[0]
            elif layer.name in self.recurrent:
                out = self._replay_rnn(layer.name, args, kwargs, probes, internals)
            elif layer.name in self.bidirectional:
                info = self.bidirectional[layer.name]
                forward = self._replay_rnn(f"{layer.name}/forward", args, kwargs, probes, internals)
                backward = self._replay_rnn(
                    f"{layer.name}/backward", args, kwargs, probes, internals
                )
                if info["return_sequences"]:
                    backward = ops.flip(backward, axis=1)  # as Bidirectional.call does
                out = _merge(info["merge_mode"], forward, backward)
                if info["return_sequences"]:
                    _set_mask(out, _mask_of(args, kwargs))
            else:
                # Training mode, as in the train step (a recorded `training` argument is replaced).
                kwargs = {k: v for k, v in kwargs.items() if k != "training"}
                out = layer(*args, **kwargs, training=True)
                if layer.name in self.activations:
                    internals[layer.name] = {"h": out}
            outputs = keras.tree.flatten(layer._inbound_nodes[0].outputs)
            for symbolic, value in zip(outputs, keras.tree.flatten(out), strict=True):
                values[id(symbolic)] = value
        return values[id(self.model.outputs[0])], internals

    def _replay_rnn(self, name: str, args, kwargs, probes: dict, internals: dict):
        """One recurrent layer (or one direction of a Bidirectional one) through its ProbeCell."""
        info = self.recurrent[name]
        sequence_in, mask = args[0], _mask_of(args, kwargs)
        columns = [sequence_in, probes[name]]
        if mask is not None:
            columns.append(ops.cast(mask, sequence_in.dtype)[..., None])
        full = info["layer"](ops.concatenate(columns, axis=-1), mask=mask, training=True)
        sizes = _state_sizes(info["cell"])
        bounds = np.cumsum([0, *sizes])
        states = [full[..., a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        # Over padded steps the state is carried, so the last position holds the state
        # after each example's last real token, which is what the model's head reads.
        sequence = states[0]
        backwards = info["backwards"]
        # A backward layer's sequences come in processing order (last input position first):
        # inputs and mask are put in that order too, so the gates see the step they belong to.
        internals[name] = {
            "h": sequence,
            "inputs": ops.flip(sequence_in, axis=1) if backwards else sequence_in,
            "states": states,
            "mask": None if mask is None else (ops.flip(mask, axis=1) if backwards else mask),
        }
        if info["last_only"]:
            return sequence[:, -1]
        out = full[..., : sizes[0]]
        _set_mask(out, mask)
        return out

    def _forward_backward(self, x, y):
        batch, steps = tf.shape(x)[0], tf.shape(x)[1]
        probes = {n: tf.zeros([batch, steps, info["units"]]) for n, info in self.recurrent.items()}
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            tape.watch(list(probes.values()))
            y_pred, internals = self._replay(x, probes)
            loss = self.loss(y, y_pred)
        grads = tape.gradient(loss, [*probes.values(), *variables])
        probe_grads, var_grads = grads[: len(probes)], grads[len(probes) :]
        # Squared ||dL/dh_t|| per example and timestep, summed over units in float64 (see the
        # module docstring); _timestep_frame sums over examples, aligned by distance.
        timesteps = {}
        for n, g in zip(probes, probe_grads, strict=True):
            squares = tf.reduce_sum(tf.square(tf.cast(g, tf.float64)), axis=2)
            if self.recurrent[n]["backwards"]:
                squares = tf.reverse(squares, axis=[1])  # processing order, as its mask
            real = internals[n]["mask"]
            real = tf.ones([batch, steps], tf.bool) if real is None else tf.cast(real, tf.bool)
            timesteps[n] = (squares, real)
        squares = {n: tf.constant(0.0, tf.float64) for n in self.layer_names}
        for g, owner in zip(var_grads, self._var_layers, strict=True):
            if g is not None:
                squares[owner] = squares[owner] + squared_norm(g)
        depth = {n: tf.sqrt(s) for n, s in squares.items()}
        for name, info in self.recurrent.items():
            parts = internals[name]
            inputs, states = parts.pop("inputs"), parts.pop("states")
            mask = parts.pop("mask")
            if mask is not None:
                parts["real"] = tf.cast(mask, tf.bool)
            if info["gates"]:
                # States entering step t: those after step t-1, zeros before the first step.
                previous = [ops.pad(s[:, :-1], [[0, 0], [1, 0], [0, 0]]) for s in states]
                parts.update(_sequence_gates(info["cell"], inputs, previous))
        return timesteps, depth, internals

    def measure(self, epoch: int) -> dict[str, pd.DataFrame]:
        """All instruments at `epoch` (0 = initialization), one frame per table."""
        started = time.perf_counter()
        saved = [v.numpy() for v in self._restore]
        try:
            with _without_graph_optimizer():
                timesteps, depth, internals = self._function(self.x, self.y)
        finally:
            for v, value in zip(self._restore, saved, strict=True):
                v.assign(value)
        frames = {
            "timesteps": _timestep_frame(epoch, timesteps, self._backwards()),
            "depth": pd.DataFrame(
                {
                    "epoch": epoch,
                    "layer": self.layer_names,
                    "position": np.arange(len(self.layer_names), dtype=np.int64),
                    "grad_norm": [float(depth[n]) for n in self.layer_names],
                }
            ),
            "units": self._unit_frame(epoch, internals),
            "weights": self._weight_frame(epoch),
        }
        self.seconds += time.perf_counter() - started
        return frames

    def _backwards(self) -> set[str]:
        return {n for n, info in self.recurrent.items() if info["backwards"]}

    def _unit_frame(self, epoch: int, internals: dict) -> pd.DataFrame:
        rows = []
        for name, kind in self.activations.items():
            rows += _unit_health(
                epoch, name.removesuffix("_act"), kind, internals[name]["h"].numpy()
            )
        for name, info in self.recurrent.items():
            parts = {k: v.numpy() for k, v in internals[name].items()}
            real = parts.pop("real", None)
            if real is not None:
                # Real positions only: (batch, time, units) -> (positions, units).
                parts = {k: v[real] for k, v in parts.items()}
            # The unit nonlinearity is the candidate (for a plain RNN that is h itself).
            main = parts.get("candidate", parts["h"])
            rows += _unit_health(epoch, name, info["kind"], main)
            for gate in info["gates"]:
                if gate == "candidate":
                    continue
                rows.append((epoch, name, f"gate_mean/{gate}", float(np.mean(parts[gate]))))
                rows += _unit_health(epoch, name, "sigmoid", parts[gate], suffix=f"/{gate}")
        return pd.DataFrame(rows, columns=["epoch", "layer", "quantity", "value"])

    def _weight_frame(self, epoch: int) -> pd.DataFrame:
        rows = []
        for name, info in self.recurrent.items():
            kernel = getattr(info["cell"], "recurrent_kernel", None)
            if kernel is None:
                continue
            kernel = np.asarray(kernel)
            units = info["units"]
            # Blocks that are not units x units (a maxout candidate) get only the whole-kernel value.
            n_blocks = kernel.shape[1] // units if kernel.shape[1] % units == 0 else 0
            names = block_names(info["cell"], n_blocks) if n_blocks else []
            rows += [(epoch, name, q, v) for q, v in kernel_spectra(kernel, names)]
        return pd.DataFrame(rows, columns=["epoch", "layer", "quantity", "value"])


@contextlib.contextmanager
def _without_graph_optimizer():
    """Run the probe function without Grappler, TensorFlow's graph optimizer.

    The probe graph runs once per epoch on 64 examples, so optimizing it never pays back: with
    Grappler on, its first call (which instantiates the graph) took 0.12-0.21 s on default-grid
    recurrent models, without it 0.05-0.10 s, and later calls were equally fast (measured).
    The setting is TensorFlow's per-call function options, put back right after, so the
    training and evaluation functions are optimized as usual. Every call of one run's probe
    uses the same setting, so its graph is instantiated once.
    """
    previous = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": previous})


def _timestep_frame(epoch: int, timesteps: dict, backwards: set[str] = frozenset()) -> pd.DataFrame:
    """Rows (epoch, layer, t, distance, grad_norm, n_examples) from per-example squared norms.

    Args:
        timesteps: layer -> (squares (batch, time) float64, real (batch, time) bool), in the
            order the layer processes the steps.
        backwards: layers that run backwards (go_backwards: a Bidirectional layer's backward
            direction): their distance counts back from the step they process last (the first
            input position), and t is the input position (t = distance without padding).
    """
    frames = []
    for name, (squares, real) in timesteps.items():
        squares, real = squares.numpy(), real.numpy()
        steps = squares.shape[1]
        positions = np.arange(steps)
        # Distance from each example's last real token (examples with none are left out).
        last = np.where(real.any(axis=1), steps - 1 - np.argmax(real[:, ::-1], axis=1), -1)
        distance = last[:, None] - positions[None, :]
        keep = real & (distance >= 0)
        total = np.bincount(distance[keep], weights=squares[keep], minlength=steps)[:steps]
        count = np.bincount(distance[keep], minlength=steps)[:steps]
        reached = np.flatnonzero(count)
        d = np.arange(int(reached.max()) + 1 if len(reached) else 0, dtype=np.int64)
        frames.append(
            pd.DataFrame(
                {
                    "epoch": epoch,
                    "layer": name,
                    "t": d if name in backwards else steps - 1 - d,
                    "distance": d,
                    "grad_norm": np.sqrt(total[d]),
                    "n_examples": count[d].astype(np.int64),
                }
            ).sort_values("t", ignore_index=True)
        )
    if not frames:
        return pd.DataFrame(
            {
                "epoch": pd.Series(dtype="int64"),
                "layer": pd.Series(dtype="str"),
                "t": pd.Series(dtype="int64"),
                "distance": pd.Series(dtype="int64"),
                "grad_norm": pd.Series(dtype="float64"),
                "n_examples": pd.Series(dtype="int64"),
            }
        )
    return pd.concat(frames, ignore_index=True)


def _probe_entry(rnn, name: str, masked: bool, input_dim: int) -> dict:
    """What the replay needs of one recurrent layer: a probe RNN over its own cell, mirroring its
    direction and its masked outputs, and the cell's sizes, gates and activation kind."""
    cell = rnn.cell
    units = _units_of(cell)
    wrapper = ProbeCell(cell, units, masked, name=f"{name.replace('/', '_')}_probe_cell")
    layer = keras.layers.RNN(
        wrapper,
        return_sequences=True,
        go_backwards=rnn.go_backwards,
        # Zeros at padded positions where the layer returns them (a Bidirectional one does).
        zero_output_for_mask=rnn.zero_output_for_mask and rnn.return_sequences,
        name=f"{name.replace('/', '_')}_probe",
    )
    return {
        "layer": layer,
        "units": units,
        "gates": _gate_names(cell, units, input_dim),
        "cell": cell,
        "last_only": not rnn.return_sequences,
        "kind": _activation_kind(cell),
        "backwards": bool(rnn.go_backwards),
    }


def _mask_of(args, kwargs):
    """The padding mask a layer was called with: passed explicitly, or carried by its input."""
    mask = kwargs.get("mask")
    return mask if mask is not None else get_keras_mask(args[0])


def _set_mask(tensor, mask) -> None:
    # What Keras attaches to a return_sequences output, so the next layer is masked as in training.
    if mask is not None:
        set_keras_mask(tensor, mask)


def _merge(mode: str | None, forward, backward):
    """Bidirectional's merge of its two outputs (keras.layers.Bidirectional.call)."""
    if mode == "concat":
        return ops.concatenate([forward, backward], axis=-1)
    if mode == "sum":
        return forward + backward
    if mode == "ave":
        return (forward + backward) / 2
    if mode == "mul":
        return forward * backward
    return (forward, backward)


def _call_arguments(layer, values: dict | None = None) -> tuple[tuple, dict]:
    """The positional and keyword arguments the model called `layer` with (its first call).

    Symbolic tensors by default; with `values` (id of a model tensor -> value), the values.
    """
    arguments = layer._inbound_nodes[0].arguments
    if values is None:
        return tuple(arguments.args), dict(arguments.kwargs)
    return arguments.fill_in(values)


def _unit_health(
    epoch: int, layer: str, kind: str, values: np.ndarray, suffix: str = ""
) -> list[tuple]:
    """Saturated fraction (tanh / sigmoid) or dead-unit fraction (relu) of one layer's outputs."""
    if kind == "tanh":
        return [(epoch, layer, f"saturated{suffix}", float(np.mean(np.abs(values) > SATURATION)))]
    if kind == "sigmoid":
        saturated = (values < 1.0 - SATURATION) | (values > SATURATION)
        return [(epoch, layer, f"saturated{suffix}", float(np.mean(saturated)))]
    if kind == "relu":
        # A unit (last axis) is dead when it is zero for every example and position of the probe batch.
        flat = values.reshape(-1, values.shape[-1])
        return [(epoch, layer, f"dead{suffix}", float(np.mean(np.all(flat <= 0.0, axis=0))))]
    return []


def kernel_spectra(kernel: np.ndarray, names: list[str]) -> list[tuple[str, float]]:
    """Spectral radius and largest singular value of each square block of a recurrent kernel.

    Args:
        kernel: (units, n_blocks * units) recurrent kernel.
        names: one name per block in column order (see `block_names`); None skips a block.

    Returns:
        (quantity, value) pairs; `max_singular/all` is the whole kernel's largest singular value.
    """
    kernel = kernel.astype(np.float64)
    units = kernel.shape[0]
    out = [("max_singular/all", _largest_singular(kernel))]
    for j, name in enumerate(names):
        if name is None:
            continue
        block = kernel[:, j * units : (j + 1) * units]
        radius = (
            float(np.max(np.abs(np.linalg.eigvals(block)))) if np.isfinite(block).all() else np.nan
        )
        out.append((f"spectral_radius/{name}", radius))
        out.append((f"max_singular/{name}", _largest_singular(block)))
    return out


def _largest_singular(matrix: np.ndarray) -> float:
    # A diverged run has NaN/Inf weights, where the SVD would raise instead of saying NaN.
    return float(np.linalg.norm(matrix, 2)) if np.isfinite(matrix).all() else float("nan")


def block_names(cell, n_blocks: int) -> list[str | None]:
    """Names of the units-wide column blocks of a cell's recurrent kernel, in column order (None: skip)."""
    if n_blocks == 1:
        return ["candidate"]
    # ZooCell: learned gates in column order, then the candidate.
    own = getattr(cell, "gate_names", None)
    if own is not None and len(own) < n_blocks:
        # A maxout candidate spans several blocks whose columns interleave pieces: no square block.
        return (
            [*own, "candidate"]
            if len(own) + 1 == n_blocks
            else [*own] + [None] * (n_blocks - len(own))
        )
    if isinstance(cell, keras.layers.LSTMCell) and n_blocks == 4:
        return ["input", "forget", "candidate", "output"]
    if isinstance(cell, keras.layers.GRUCell) and n_blocks == 3:
        return ["update", "reset", "candidate"]
    return [f"block_{j}" for j in range(n_blocks)]


class ProbeCallback(keras.callbacks.Callback):
    """Measures the probe at the start of training (epoch 0) and after every epoch; frames collect in `frames`."""

    def __init__(self, probe: Probe):
        super().__init__()
        self.probe = probe
        self.frames: dict[str, list[pd.DataFrame]] = {name: [] for name in TABLES}

    def on_train_begin(self, logs=None):
        self._add(self.probe.measure(0))

    def on_epoch_end(self, epoch, logs=None):
        self._add(self.probe.measure(epoch + 1))

    def _add(self, frames: dict[str, pd.DataFrame]) -> None:
        for name, frame in frames.items():
            self.frames[name].append(frame)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            name: pd.concat(frames, ignore_index=True)
            for name, frames in self.frames.items()
            if frames
        }
