"""Plan an execution: estimate each run's cost, order runs largest first, pick the worker count."""

from __future__ import annotations

import os

from keras_ablate.config.schema import RunSpec

# Relative cost of one time step per unit of width, from the CPU speeds in KERAS_NOTES
# (SimpleRNN ~61 steps/s, LSTM ~32, LayerNorm-LSTM ~19-24); CNN and MLP are a rough guess.
ARCHITECTURE_WEIGHT = {"mlp": 0.2, "cnn": 0.5, "rnn": 1.0, "gru": 1.5, "lstm": 2.0}
NORMALIZED_WEIGHT = 1.5

# Cost units per second on one core (LSTM(64), embed 64, batch 64, length 100 at ~32 steps/s
# is ~1e8 units per step). Used only to decide whether a pool pays for its start-up.
UNITS_PER_SECOND = 3e9
# Tracing and building a model costs about 2 s however small it is (KERAS_NOTES).
FIXED_SECONDS_PER_RUN = 2.0
# Starting a worker process and importing TensorFlow in it.
WORKER_START_SECONDS = 5.0
# Resident memory of a worker with TensorFlow and Keras imported, before any model.
WORKER_BASE_BYTES = 1.0 * 2**30


def _dataset_size(spec: RunSpec) -> tuple[int, int]:
    """(training examples, time steps), from whichever option names the dataset uses."""
    options = spec.dataset.get("options", {})
    n_train = options.get("n_train") or options.get("n_max") or 10_000
    seq_len = options.get("seq_len") or options.get("max_length") or 100
    return int(n_train), int(seq_len)


def estimate_cost(spec: RunSpec) -> float:
    """A relative training cost: epochs x examples x time steps x width work x architecture weight."""
    settings = spec.settings
    n_train, seq_len = _dataset_size(spec)
    architecture = settings["architecture"]
    if architecture == "cnn":
        width = (
            settings["filters"] * settings["embed_dim"] * sum(settings.get("kernel_sizes") or (3,))
        )
    else:
        # Per time step a recurrent layer multiplies by its input and recurrent kernels.
        width = settings["units"] * (settings["units"] + settings["embed_dim"])
    base = "lstm" if architecture.startswith("lstm") else architecture
    weight = ARCHITECTURE_WEIGHT.get(base, 1.0)
    if settings.get("normalization", "none") != "none":
        weight *= NORMALIZED_WEIGHT
    return float(settings["epochs"] * n_train * seq_len * width * weight * settings.get("depth", 1))


def estimate_seconds(spec: RunSpec) -> float:
    return FIXED_SECONDS_PER_RUN + estimate_cost(spec) / UNITS_PER_SECOND


def order_largest_first(specs: list[RunSpec]) -> list[RunSpec]:
    """Longest runs first, so the last run to start is a short one (stable for ties)."""
    return sorted(specs, key=estimate_cost, reverse=True)


def estimate_params(spec: RunSpec) -> int:
    settings = spec.settings
    vocab = int(spec.dataset.get("options", {}).get("vocab_size") or 20_000)
    units, embed = settings["units"], settings["embed_dim"]
    return vocab * embed + 4 * units * (units + embed) * settings.get("depth", 1)


def worker_bytes(spec: RunSpec) -> float:
    # Weights, gradients and two optimizer slots in float32, plus TF's own footprint.
    return WORKER_BASE_BYTES + 16 * estimate_params(spec)


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def available_memory() -> float | None:
    """MemAvailable from /proc/meminfo in bytes, or None where there is none."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def auto_workers(
    specs: list[RunSpec], threads: int = 1, cpus: int | None = None, memory: float | None = None
) -> int:
    """Worker processes for these runs: one per `threads` cores, fewer if memory is short,
    and 1 (in this process) when starting workers would cost more than it saves.
    """
    if not specs:
        return 1
    cpus = cpus if cpus is not None else available_cpus()
    memory = memory if memory is not None else available_memory()
    workers = min(max(1, cpus // threads), len(specs))
    if memory is not None:
        workers = min(workers, max(1, int(memory // max(worker_bytes(s) for s in specs))))
    if workers <= 1:
        return 1
    total = sum(estimate_seconds(s) for s in specs)
    # A pool of w finishes in about start + total / w; in-process takes total.
    if total <= WORKER_START_SECONDS * workers / (workers - 1):
        return 1
    return workers
