"""Cost of the instruments: per-step time vs a plain model.fit, and the probes' share of a run's wall time.

Part 1 (per-step instruments, goal: within 5 %): the same model (same builder, same seed,
same optimizer and clipping) trained by a plain keras.Model and by InstrumentedModel, in one
process, rounds interleaved in ABBA order so machine load hits both alike. Per round and
model, the median time between consecutive train batches; reported: the median over rounds
of each, their ratio, and the range of the per-round ratios (the noise).

Part 2 (probe-batch instruments, goal: at most 10 %): full runs as a worker trains them
(executors.run_spec, with the imports frozen out of the garbage collector's sight), default-grid
settings (ablations.yaml, tanh), every architecture x normalization at both of the grid's clip
levels, one after the other as a worker takes them (the second run of a model keeps its model
and traced probe), each reporting the seconds its probes took (tracing included) against its
wall time; the total is the share over all of them, as a grid run would see it, and the share
over the first run of each model (built fresh) is printed too.

    .venv/bin/python benchmarks/overhead.py [--steps 300] [--rounds 16] [--architectures lstm,cnn]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_ablate.config import RunSettings, RunSpec, make_run_id  # noqa: E402
from keras_ablate.data import load_dataset  # noqa: E402
from keras_ablate.executors import configure_threads, frozen_imports, run_spec  # noqa: E402
from keras_ablate.models import build_model  # noqa: E402
from keras_ablate.training.loop import (  # noqa: E402
    array_pipeline,
    build_instrumented,
    compile_model,
)

# The default grid's dataset and base settings (ablations.yaml).
DATASET = {
    "name": "ngram",
    "options": {"seq_len": 20, "vocab_size": 30, "n_train": 2048, "n_val": 256, "seed": 0},
}
BASE = {
    "units": 32,
    "depth": 1,
    "embed_dim": 16,
    "filters": 32,
    "learning_rate": 0.005,
    "batch_size": 64,
    "epochs": 6,
}


class BatchTimes(keras.callbacks.Callback):
    """Wall time between consecutive train batch ends (the first interval of an epoch is dropped)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.last, self.intervals = None, []

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self.last is not None:
            self.intervals.append(now - self.last)
        self.last = now


def settings_for(architecture: str, **overrides) -> dict:
    return RunSettings(
        **{**BASE, "architecture": architecture, "clip": "norm:1.0", **overrides}
    ).model_dump(mode="json")


def plain_model(settings: dict, dataset, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = build_model(settings, dataset)
    return compile_model(model, settings, dataset)


def step_overhead(architecture: str, steps: int, rounds: int) -> tuple[float, float, float, list]:
    """(median step seconds plain, instrumented, best-round ratio, per-round ratios)."""
    dataset = load_dataset(DATASET["name"], DATASET["options"])
    settings = settings_for(architecture)
    batch = settings["batch_size"]
    # Enough copies of the data for `steps` batches.
    repeats = -(-batch * steps // len(dataset.x_train))
    x = np.concatenate([dataset.x_train] * repeats)[: batch * steps]
    y = np.concatenate([dataset.y_train] * repeats)[: batch * steps]
    models = {
        "plain": plain_model(settings, dataset, seed=0),
        "instrumented": build_instrumented(
            settings, dataset, seed=0, capacity=steps * (rounds + 1)
        ),
    }
    # The input pipeline the suite trains from (tf.data autotuning off), the same for both.
    data = array_pipeline(x, y, batch, shuffle=False)
    timer = BatchTimes()
    for model in models.values():  # trace and compile outside the timed rounds
        model.fit(data, epochs=1, verbose=0, shuffle=False)
    medians = {name: [] for name in models}
    for index in range(rounds):
        order = list(models) if index % 2 == 0 else list(models)[::-1]
        for name in order:
            models[name].fit(data, epochs=1, verbose=0, shuffle=False, callbacks=[timer])
            medians[name].append(statistics.median(timer.intervals))
    ratios = [b / a for a, b in zip(medians["plain"], medians["instrumented"], strict=True)]
    # Load only ever slows a round down: the fastest round of each is the least disturbed.
    best = min(medians["instrumented"]) / min(medians["plain"])
    return (
        statistics.median(medians["plain"]),
        statistics.median(medians["instrumented"]),
        best,
        ratios,
    )


def probe_share(architecture: str, **overrides) -> tuple[float, float]:
    """(probe seconds, wall seconds) of one default-grid run."""
    settings = settings_for(architecture, **overrides)
    spec = RunSpec("bench", make_run_id(settings, DATASET, 0), settings, DATASET, 0, {})
    summary, _ = run_spec(spec)
    return summary["probe_time_s"], summary["wall_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="train steps per model per round")
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--architectures", default="lstm,cnn", help="per-step part ('' skips it)")
    grid = ",".join(
        f"{a}:{n}" for a in ("cnn", "rnn", "lstm", "gru") for n in ("none", "batch", "layer")
    )
    parser.add_argument("--runs", default=grid, help="probe part, arch:normalization ('' skips it)")
    args = parser.parse_args()
    # One intra/inter-op thread per run, as every executor trains by default (resources.num_cpus).
    configure_threads(1)
    print(f"cpu count {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} at start")

    print(
        f"\nper-step instruments: default-grid model, jit on, {args.rounds} rounds x {args.steps} steps"
    )
    print(
        f"{'architecture':14s} {'plain ms':>9s} {'instr. ms':>10s} {'ratio':>6s} {'best':>6s}  per-round"
    )
    for architecture in filter(None, args.architectures.split(",")):
        plain, instrumented, best, ratios = step_overhead(architecture, args.steps, args.rounds)
        spread = f"{min(ratios):.3f} .. {max(ratios):.3f}"
        ratio = instrumented / plain
        print(
            f"{architecture:14s} {plain * 1e3:9.2f} {instrumented * 1e3:10.2f} {ratio:6.3f} {best:6.3f}"
            f"  {spread}"
        )

    print(
        "\nprobe-batch instruments: default-grid runs (6 epochs of 32 steps, 7 probes), each model"
        " at clip none then norm:1.0, in one process as a worker trains them (the second keeps"
        " the first one's model and traced probe)"
    )
    print(f"{'run':22s} {'probe s':>8s} {'wall s':>7s} {'share':>6s}")
    totals = {"first": [0.0, 0.0], "all": [0.0, 0.0]}
    with frozen_imports():
        for run in filter(None, args.runs.split(",")):
            architecture, _, normalization = run.partition(":")
            for clip in ("none", "norm:1.0"):
                probe, wall = probe_share(
                    architecture, normalization=normalization or "none", clip=clip
                )
                for name in ("first", "all") if clip == "none" else ("all",):
                    totals[name][0] += probe
                    totals[name][1] += wall
                print(f"{run + ' ' + clip:22s} {probe:8.2f} {wall:7.2f} {probe / wall:6.1%}")
    for name, label in (("first", "built fresh (clip none)"), ("all", "all (the grid's share)")):
        probe, wall = totals[name]
        if wall:
            print(f"{label:22s} {probe:8.2f} {wall:7.2f} {probe / wall:6.1%}")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
