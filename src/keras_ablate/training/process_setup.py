"""Per-process TensorFlow setup for whatever process trains runs: threads, XLA's thread pool, the
garbage collector, native log output and dying with the driver.

Every executor calls these (executors.py): the driver process for --workers 1, each worker of
a pool, each Ray worker. Nothing here imports TensorFlow at module level.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import signal
import threading
import time
from pathlib import Path

from keras_ablate import store


def configure_threads(threads: int) -> int:
    """Fix TensorFlow's intra/inter-op threads for this process; return the intra count in effect.

    Must run before TensorFlow executes anything. The count is part of the numerics: without
    XLA, oneDNN convolutions give different bits with 1 and 2 threads (measured), so every
    executor uses the same per-run count (`resources.num_cpus`), never one derived from --workers.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if threads == 1:
        single_threaded_xla()
    import tensorflow as tf

    # Keras warns about retracing when one process builds many models; here that is the design.
    tf.get_logger().setLevel("ERROR")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # TF already started in this process (a notebook, a test session): keep its count.
    return tf.config.threading.get_intra_op_parallelism_threads()


XLA_SINGLE_THREAD = "--xla_cpu_multi_thread_eigen=false"


def single_threaded_xla() -> None:
    """Keep XLA:CPU's own Eigen thread pool to one thread too (read when TensorFlow starts).

    TF's intra/inter-op settings do not reach the pool that XLA-compiled steps run in, so two
    one-thread workers still ran four busy threads on two cores: measured here, three default-grid
    runs took 16.4 s and 18.9 s in two concurrent processes against 12.5 s and 15.7 s with this
    flag, 11.1 s alone either way. It is part of the numerics like the thread count: records of
    cnn, lstm and gru runs came out bit-identical with and without it, those of SimpleRNN runs
    did not (all 24 rnn runs of the default grid differ in the last bits; checked again with
    XLA_FLAGS=--xla_cpu_multi_thread_eigen=true). Every executor sets it for one-thread runs.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {XLA_SINGLE_THREAD}".strip()


def freeze_imports() -> None:
    """Import the training code, then move every object alive now out of the garbage collector's sight.

    A full collection walks every tracked object, and TensorFlow + Keras leave about 400,000 of
    them; Keras's clear_session runs one after every run. With the imported modules frozen
    (gc.freeze: never collected, never scanned) that collection fell from 0.32 s to 0.10 s a run
    (16-run throughput grid, measured; release_models takes it to ~0.02 s). A collection runs
    first, so what is frozen is what is alive now: in a worker, the imported modules, which live
    as long as the process. An object frozen here that dies later is kept until the process ends
    or `gc.unfreeze()` (frozen_imports calls it when the grid is done).
    """
    import keras_ablate.training.loop  # noqa: F401 - TensorFlow, Keras, pandas and the builders

    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def frozen_imports():
    """freeze_imports for the length of a block, in a process that goes on afterwards (the driver)."""
    freeze_imports()
    try:
        yield
    finally:
        gc.unfreeze()


def release_models() -> None:
    """After a run: drop its model's graphs and keep what is left out of the collector's sight."""
    # Drop the finished model's graphs so a long-lived process does not grow run after run;
    # every run seeds itself (keras.utils.set_random_seed), so this does not change its numbers.
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()  # ends with a full gc.collect()
    if gc.get_freeze_count():
        # What survived that collection is mostly TensorFlow's own per-model leftovers (about
        # 17,000 objects a run, never freed until the process ends: why workers are recycled).
        # Frozen, they are not walked again by the next run's collection: 0.02 s a run instead
        # of growing by about 0.01 s with every run (measured). The finished run's record
        # (summary and a few small tables) is still referenced here and is frozen with them,
        # which keeps it until the worker is recycled: tens of kB a run (192 steps x 20 columns).
        gc.freeze()


def redirect_native_output(exp_dir: Path) -> None:
    """Send this worker's stdout/stderr (fd 1 and 2) to results/<exp>/logs/worker-<pid>.log.

    TensorFlow's C++ runtime logs through absl straight to fd 2 and ignores
    TF_CPP_MIN_LOG_LEVEL for some messages (oneDNN banners, grappler notices about RNN
    graphs): dozens of lines that would bury the driver's one line per run. Nothing a user
    needs is lost: a run's Python errors are in its summary.json, the log keeps the rest.
    """
    logs = exp_dir / store.LOGS
    try:
        logs.mkdir(parents=True, exist_ok=True)
        fd = os.open(
            logs / f"worker-{os.getpid()}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644
        )
    except OSError:
        return  # An unwritable results folder fails later, with a clear error, in write_run.
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def die_with_parent(parent_pid: int) -> None:
    """Make this worker exit when the driver dies, even by kill -9."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG (Linux); fails harmlessly elsewhere
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:  # Portable fallback: reparenting means the driver is gone.
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
