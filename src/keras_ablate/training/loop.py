"""One RunSpec -> a fresh model trained with the instrumented step -> records (summary + tables)."""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass, field

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from keras_ablate.config.schema import RunSpec
from keras_ablate.data import load_dataset
from keras_ablate.models import build_model
from keras_ablate.models.layers import loss_for
from keras_ablate.scoring import best_values, blank_history, blank_probe_table, final_values
from keras_ablate.training.compile_policy import resolve_jit
from keras_ablate.training.probes import Probe, ProbeCallback, probe_batch
from keras_ablate.training.step import InstrumentedModel, StopOnDivergence, optimizer_clip_kwargs
from keras_ablate.version import __version__

_OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
    "adamw": keras.optimizers.AdamW,
}


@dataclass
class RunRecord:
    """What one run produced: a JSON summary and named tables (written as Parquet)."""

    summary: dict
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def make_optimizer(settings: dict) -> keras.optimizers.Optimizer:
    return _OPTIMIZERS[settings["optimizer"]](
        learning_rate=settings["learning_rate"], **optimizer_clip_kwargs(settings["clip"])
    )


def build_instrumented(
    settings: dict, dataset, seed: int, capacity: int, base_dir=None
) -> InstrumentedModel:
    """Seed everything, build a fresh model, compile it and attach the instruments.

    `base_dir`: the experiment file's folder, where a user's builder module is looked up.
    """
    keras.utils.set_random_seed(seed)
    functional = build_model(settings, dataset, base_dir)
    model = InstrumentedModel(
        inputs=functional.inputs, outputs=functional.outputs, name=functional.name
    )
    prepare_training(model, settings, dataset, capacity)
    return model


def prepare_training(model: InstrumentedModel, settings: dict, dataset, capacity: int) -> None:
    """Compile for the run's training settings, attach the instruments, build the state: what a
    fresh model needs, and what a kept model needs for another optimizer, clip level or budget."""
    compile_model(model, settings, dataset)
    model.configure_instruments(settings["clip"], capacity)
    build_state(model, dataset, settings["batch_size"])


def build_state(model: keras.Model, dataset, batch_size: int) -> None:
    """Create the optimizer's slots and the metrics' variables now, before the first step.

    Without a distribution strategy Keras creates them inside the first trace of the train
    function, and a tf.function whose first trace creates variables is traced a second time
    (measured: every train step traced twice, in plain `fit` too). Built here, eagerly, the
    step is traced once: 0.3-0.4 s less per run on default-grid models (about a third of the
    tracing). Only shapes are read from the batch; no variable value and no random draw differs.
    """
    batch = (dataset.x_train[:batch_size], dataset.y_train[:batch_size])
    model._symbolic_build(data_batch=batch)  # Keras's own build, which fit defers to the trace


# The last run's compiled model (and its probe), kept for the next run of this process if that
# one builds the same model on the same data (RunSpec.model_key). Another seed of the same
# configuration reuses the traced (and with XLA compiled) train, evaluation and probe
# functions; a run that differs only in how it trains (config.TRAINING_ONLY: another clip
# level, learning rate, ...) is compiled again but keeps the model and its traced probe.
# Either way the weights are reinitialized as a fresh build would have them (reinitialize).
_KEPT: dict[str, tuple] = {}


def reuse_enabled() -> bool:
    """Reuse compiled models across seeds unless KERAS_ABLATE_REUSE=0 (for checking and debugging)."""
    return os.environ.get("KERAS_ABLATE_REUSE", "1") != "0"


def reinitialize(
    model: InstrumentedModel, settings: dict, dataset, seed: int, base_dir=None
) -> None:
    """Put a kept compiled model in the state a fresh build_instrumented(..., seed) would have.

    A fresh model is built with the same seed (so the same random draws, in the same order) and
    every variable of every layer (weights, batch-norm statistics, dropout seed states) is
    copied from it; the optimizer's step counter and slot variables go back to zero (their
    initial value) and the step records are emptied. Building is cheap; what is saved is the
    tracing and compiling of the train, evaluation and probe functions. Tested: the records of
    seeds trained this way equal those of fresh builds byte for byte.
    """
    keras.utils.set_random_seed(seed)
    fresh = build_model(settings, dataset, base_dir)
    for kept_layer, fresh_layer in zip(model.layers, fresh.layers, strict=True):
        if kept_layer.name != fresh_layer.name:
            raise RuntimeError(f"kept model differs: {kept_layer.name} vs {fresh_layer.name}")
        for kept_variable, fresh_variable in zip(
            kept_layer.variables, fresh_layer.variables, strict=True
        ):
            kept_variable.assign(fresh_variable)
    for variable in model.optimizer.variables:
        if variable.path.rsplit("/", 1)[-1] != "learning_rate":
            variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
    model.reset_instruments()


def compile_model(model: keras.Model, settings: dict, dataset) -> keras.Model:
    """Compile with the run's optimizer (clipping included), task loss and metric, jit and
    steps_per_execution: the one place that says how a run's model is compiled."""
    model.compile(
        optimizer=make_optimizer(settings),
        loss=loss_for(dataset),
        metrics=[dataset.metric],
        jit_compile=resolve_jit(settings, len(dataset.x_train), dataset.seq_len),
        steps_per_execution=settings["steps_per_execution"],
    )
    return model


def fit_data(dataset, batch_size: int) -> dict:
    """`x` and `validation_data` for model.fit: the pipeline Keras builds for in-memory arrays
    (training batches reshuffled every epoch, validation in order), with tf.data autotuning off.

    fit(x, y, shuffle=True) builds exactly this pipeline, so the batches and records are the
    same bit for bit (tested). Autotuning is what differs: its background threads and waits
    cost little with cores to spare, but with one core per worker they halved the step rate
    (measured: an LSTM run pinned to one core trained at 31 steps/s from arrays and 61 steps/s
    from this pipeline; 55 and 58 with both cores free), and that is what two workers on two
    cores are.
    """
    return {
        "x": array_pipeline(dataset.x_train, dataset.y_train, batch_size, shuffle=True),
        "validation_data": array_pipeline(dataset.x_val, dataset.y_val, batch_size, shuffle=False),
    }


def array_pipeline(x, y, batch_size: int, shuffle: bool) -> tf.data.Dataset:
    # Keras's own adapter (what fit uses for arrays); there is no public way to build it.
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    adapter = ArrayDataAdapter(x, y, batch_size=batch_size, shuffle=shuffle)
    # Its batches come out of a flat_map, so say how many there are: fit then knows an epoch's
    # length from the first epoch on, as it does for arrays.
    pipeline = adapter.get_tf_dataset().apply(
        tf.data.experimental.assert_cardinality(adapter.num_batches)
    )
    options = tf.data.Options()
    options.autotune.enabled = False
    return pipeline.with_options(options)


def run_one(spec: RunSpec) -> RunRecord:
    """Train one run and return its records. A diverged run returns normally with status 'diverged'."""
    started = time.time()
    clock = time.perf_counter()
    settings = spec.settings
    dataset = load_dataset(spec.dataset["name"], spec.dataset["options"], base_dir=spec.base_dir)
    load_s = time.perf_counter() - clock
    steps_per_epoch = math.ceil(len(dataset.x_train) / settings["batch_size"])
    capacity = steps_per_epoch * settings["epochs"]
    clock = time.perf_counter()
    key = spec.model_key()
    kept = _KEPT.pop(key, None) if reuse_enabled() else None
    recompiled = False
    _KEPT.clear()  # at most one kept model per process
    if kept is None:
        model = build_instrumented(settings, dataset, spec.seed, capacity, spec.base_dir)
        # Probe-batch instruments at initialization and after every epoch (training/probes.py).
        probe = Probe(model, *probe_batch(dataset), loss_for(dataset))
    else:
        model, probe, kept_settings = kept
        recompiled = kept_settings != settings
        if recompiled:
            # Another optimizer, learning rate, clip level or budget for the same model: a new
            # optimizer and train step (compiled again); the model and its probe are kept.
            prepare_training(model, settings, dataset, capacity)
        reinitialize(model, settings, dataset, spec.seed, spec.base_dir)
        probe.seconds = 0.0
    probes = ProbeCallback(probe)
    build_s = time.perf_counter() - clock
    timer = RunTimer()

    fit = model.fit(
        **fit_data(dataset, settings["batch_size"]),
        epochs=settings["epochs"],
        shuffle=False,  # the pipeline shuffles; Keras warns about its default True with one
        verbose=0,
        callbacks=[timer, probes, StopOnDivergence()],
    )
    if reuse_enabled():
        _KEPT[key] = (model, probe, settings)
    history = history_frame(fit.history, dataset.metric)
    clock = time.perf_counter()
    if dataset.has_test:
        scores = held_out_scores(model, dataset, settings["batch_size"])
        history = add_test_scores(history, scores, dataset.metric)
    test_s = time.perf_counter() - clock
    columns, rows = model.step_records()
    steps = pd.DataFrame(rows, columns=columns)
    steps.insert(0, "step", np.arange(len(steps), dtype=np.int64))
    steps.insert(1, "epoch", (steps["step"] // steps_per_epoch).astype(np.int64))
    history = add_clip_fraction(history, steps)

    diverged_step = model.first_nonfinite_step
    # Nothing measured on the diverged weights is kept (scoring.py says which epochs that is).
    history = blank_history(history, diverged_step, steps_per_epoch)
    probe_tables = {
        name: blank_probe_table(table, diverged_step, steps_per_epoch)
        for name, table in probes.tables().items()
    }
    summary = {
        "run_id": spec.run_id,
        "status": "diverged" if diverged_step is not None else "ok",
        "diverged_step": diverged_step,
        "metric": dataset.metric,
        "baseline": dataset.baseline(),
        "epochs_done": int(len(history)),
        "steps_done": int(len(steps)),
        "steps_per_epoch": steps_per_epoch,
        "n_params": int(model.count_params()),
        "final": final_values(history),
        "best": best_values(history),
        "wall_time_s": round(time.time() - started, 3),
        "probe_time_s": round(probes.probe.seconds, 3),
        "jit_compiled": bool(model.jit_compile),
        "reused_compiled_model": kept is not None and not recompiled,
        "timing": timer.breakdown(load_s, build_s, probes.probe.seconds, test_s),
        "environment": environment(),
    }
    if probe.skipped:
        # Recurrent layers of the model without per-timestep rows, each with the reason.
        summary["probe_skipped"] = probe.skipped
    return RunRecord(summary=summary, tables={"history": history, "steps": steps, **probe_tables})


class RunTimer(keras.callbacks.Callback):
    """Where a run's time goes: train steps, the first step's tracing/compilation, evaluation.

    Each train batch and each evaluation is timed between its begin and end hooks (a step call
    returns when its work is done on CPU). The first train batch and the first evaluation also
    trace (and with XLA compile) their functions: their excess over a typical later one is
    counted as `compile_s`. Probes are timed by the probe itself; the fit loop's own
    bookkeeping (callbacks, the input pipeline between steps) is `other_fit_s`.
    """

    def __init__(self):
        super().__init__()
        self.batches: list[float] = []
        self.evaluations: list[float] = []
        self.fit_s = 0.0
        self._clock = 0.0

    def on_train_begin(self, logs=None):
        self._fit_started = time.perf_counter()

    def on_train_end(self, logs=None):
        self.fit_s = time.perf_counter() - self._fit_started

    def on_train_batch_begin(self, batch, logs=None):
        self._clock = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append(time.perf_counter() - self._clock)

    def on_test_begin(self, logs=None):
        self._test_clock = time.perf_counter()

    def on_test_end(self, logs=None):
        self.evaluations.append(time.perf_counter() - self._test_clock)

    def breakdown(self, load_s: float, build_s: float, probe_s: float, test_s: float = 0.0) -> dict:
        """Seconds per phase (teardown is added by the executor that releases the model); the
        held-out evaluation after fit (`test_s`) counts as evaluation."""
        train_trace = _first_excess(self.batches)
        eval_trace = _first_excess(self.evaluations)
        steps_s = sum(self.batches) - train_trace
        eval_s = sum(self.evaluations) - eval_trace
        compile_s = train_trace + eval_trace
        other = self.fit_s - steps_s - eval_s - compile_s - probe_s
        return {
            "load_s": round(load_s, 3),
            "build_s": round(build_s, 3),
            "compile_s": round(compile_s, 3),
            "steps_s": round(steps_s, 3),
            "eval_s": round(eval_s + test_s, 3),
            "probe_s": round(probe_s, 3),
            "other_fit_s": round(max(other, 0.0), 3),
        }


def _first_excess(durations: list[float]) -> float:
    """How much longer the first call took than the median later one (0 with one call)."""
    if len(durations) < 2:
        return 0.0
    return max(durations[0] - float(np.median(durations[1:])), 0.0)


def held_out_scores(model: keras.Model, dataset, batch_size: int) -> dict:
    """Loss and metric on the test split, with the weights the run ended with (Keras names)."""
    pipeline = array_pipeline(dataset.x_test, dataset.y_test, batch_size, shuffle=False)
    return model.evaluate(pipeline, verbose=0, return_dict=True)


def add_test_scores(history: pd.DataFrame, scores: dict, metric: str) -> pd.DataFrame:
    """Add `test/loss` and `test/<metric>` to the last epoch's row (NaN before it).

    The test split is scored once, after training, and nothing is selected on it; scoring.py
    blanks it like a validation value when the weights it was measured on had diverged.
    """
    if history.empty:
        return history
    history = history.copy()
    last = history.index[-1]
    for name, value in history_frame({k: [v] for k, v in scores.items()}, metric).items():
        if name == "epoch":
            continue
        column = "test/" + name.split("/", 1)[1]
        history[column] = np.nan
        history.loc[last, column] = float(value.iloc[0])
    return history


def add_clip_fraction(history: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    """Add `train/clip_fraction`: the share of an epoch's steps where clipping fired (history epochs count from 1)."""
    if history.empty or "grad/clipped" not in steps.columns:
        return history
    per_epoch = steps.groupby("epoch")["grad/clipped"].mean()
    history = history.copy()
    history["train/clip_fraction"] = per_epoch.reindex(history["epoch"] - 1).to_numpy(dtype=float)
    return history


def history_frame(history: dict, metric: str) -> pd.DataFrame:
    """Keras History -> one row per epoch with slash names: train/loss, val/accuracy, ..."""
    renamed = {}
    for key, values in history.items():
        name = f"val/{key[4:]}" if key.startswith("val_") else f"train/{key}"
        # Keras names the compiled metric after the function; keep one name per metric.
        name = name.replace("/compile_metrics", f"/{metric}")
        renamed[name] = [float(v) for v in values]
    df = pd.DataFrame(renamed)
    df.insert(0, "epoch", np.arange(1, len(df) + 1, dtype=np.int64))
    return df


def environment() -> dict:
    """Versions and hardware, stored with every run."""
    import os

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "keras_ablate": __version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
